"""The guarded conversation: the contract every front door drives.

A conversation is a stream of events (`events`). `choice.resolve` turns a `SessionChoice` into the cast of
agents, models and policy once; `Conversation` (`conversation`) assembles it with a transcript and drives
either chat behind the `Chat` protocol (`base`): `GuardedChat` (assistant drafts, moral reviewer judges,
revise or deliver) or `BareChat` (the unreviewed baseline of an evaluation). `send()` returns a
`TurnResult`: outcome, delivered text, revisions, categories, usage.

Imports `config`, `models`, `audit` and `reviewer_head` (a trained judgement head, where one is configured);
imported by the front doors (terminal, review, eval, serve).
"""
