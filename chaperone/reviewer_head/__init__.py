"""The reviewer's judgement head (issue 14, groundwork): a small classifier over the embedded model's own
hidden states. `prompt` renders the fixed head prompt (config/reviewer_head.yaml), `data` assembles the
labelled rows and their seeded split, `features` caches extracted hidden states on disk (resumable),
`head` loads and scores a trained head (arrays + JSON card, refused for another model or prompt), `train`
rebuilds it; `requests` builds the request head's rows and trains it (P(request harmful), for the refusal
check; config/request_head.yaml); `cli` is `python run.py reviewer extract|train|train-requests`. The engine
reads a head through `head`.
"""
