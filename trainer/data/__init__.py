"""Problems in: one schema (`problems.py`: our JSONL, verl parquet), the train / probe / held-out split
(`splits.py`), n-gram decontamination (`decontam.py`) and the toy tasks (`toy_tasks.py`)."""
