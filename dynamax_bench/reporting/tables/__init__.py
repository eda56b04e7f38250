"""The tables of paper_tables/, one module per table or family; `reporting.paper_tables` writes them.

Each module has a `tables(inputs)` function that returns its `render.Table`s (a frame, a file
stem, a caption) from a run's `render.PaperInputs`; adding a table is one module here plus one
line in `reporting.paper_tables.TABLES`. `render` writes every table alike (Markdown, CSV, LaTeX).
"""
