"""The self-hosted modelbook registry: ClearML's REST protocol over the modelbook store.

``modelbook server`` runs one process that answers the ClearML API (``/auth.login``,
``/v2.23/models.get_all``, ...) and a ClearML-style files server under ``/files``, on top of
the same :class:`~modelbook.store.sql.SqlStore` the embedded backend uses (SQLite by
default, PostgreSQL with ``--db postgresql://...``). The unmodified ``clearml`` SDK and
modelbook's HTTP backend both talk to it.

Modules, one job each::

    settings      ServerSettings: paths, limits, token lifetime
    envelope      the {"meta", "data"} reply, ApiError and the ClearML error codes
    credentials   access keys and hashed secrets, kept in the store's settings
    tokens        HS256 JWTs: signing key, issue, verify
    api           the API dispatcher: versioned routing, auth, body parsing
    paths         files-root path safety
    files         the files server: streamed multipart upload, download, delete
    wire          records <-> ClearML documents, ``only_fields`` projection
    services/     the endpoints, one module per ClearML service
    app           the ASGI application
    cli           ``modelbook server`` and ``modelbook server create-credentials``

Importing this package imports nothing heavy; the web framework loads with ``app``.
"""
