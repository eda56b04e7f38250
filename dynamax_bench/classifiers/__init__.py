"""Exit methods (trained classifier kinds, training-free rules, one registry) and the stages that train them:
`prepare_corpus`, `extract_oracle`, `distill`."""
