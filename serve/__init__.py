"""The serve room: the OpenAI-compatible endpoint on Ray Serve (`app.py`, its config in `config.py`) and
`ssp serve` (`cli.py`). Imports point down (trainer/, actors/, cluster/, ground) and to the config tree."""
