"""The web UI: the same pages for ``modelbook server`` (at ``/``, log-in with an access key
and secret) and ``modelbook ui`` (the embedded store, a Jupyter-style token in the URL).

Server-rendered HTML, one stylesheet in the package, inline SVG plots: nothing is fetched
from the internet and every table reads without JavaScript. Modules, one job each::

    auth         log-in, the session cookie, CSRF tokens
    queries      the models page's filters and keyset paging (store query layer + indexes)
    views        what the model, compare and task pages show
    actions      publish, archive, tags: store verbs with the API's rules
    downloads    where a version's bytes are
    plots        inline SVG line plots
    render       HTML building blocks and the page layout
    pages        the models and model pages
    pages_extra  the compare, task, log-in and error pages
    routes       the Starlette application
    mount        the UI of a server, or of an embedded store
    command      ``modelbook ui``
    testing      calling an ASGI application in-process (tests, benchmarks)

Importing this package imports nothing heavy; Starlette loads with ``routes``.
"""
