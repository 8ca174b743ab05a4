"""Front door: the auditor's tools over transcripts. Index (list, filters), story (a conversation read
back turn by turn), stats, verification views, exports (markdown, JSON, HTML) and the browser page.

Reads transcripts through `audit`; imports the engine only for its vocabulary (outcomes); never another
front door.
"""
