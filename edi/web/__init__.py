"""Web console and HTTP API (issue 10): pages in French, `/api/v1`, `/healthz`, `/metrics`.

`edi web` runs it alone (`edi.web.server.run`); another service embeds it with
`edi.web.server.WebThread(cfg).start()` … `.stop()`.
"""
