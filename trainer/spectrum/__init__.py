"""The Spectrum stage: SFT on Ray Train (`sft.py`), Pass@K probes per subdomain (`probe.py`), the merge of the
specialists (`merge.py`), and the stage that chains them with a report (`stage.py`, `ssp spectrum`)."""
