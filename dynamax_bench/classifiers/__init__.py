"""Exit methods (trained classifier kinds, training-free rules, one registry) and the stages that train them:
`prepare_corpus`, `extract_oracle`, `select_top_k`, `distill`, and the `exit_weight_ablation`."""
