"""moto server without the work it repeats on every request (moto 5.2, measured with cProfile on
PutItem through moto's WSGI app: about 5.9 ms of CPU per request, 2.5 ms of it below).

1. `moto.backends.list_of_moto_modules()` lists moto's package directory and stats each of its
   ~50 entries on every request (moto_server/werkzeug_app.py, get_backend_for_host). The package
   does not change while the server runs: the list is read once.
2. `moto.core.responses.method_names_from_class` runs `inspect.getmembers` over the response
   class on every request (BaseResponse.call_action). A class's functions do not change: the
   names are kept per class.
3. moto creates its Flask apps with `debug = True`; Flask then builds a new class per request
   (flask.debughelpers.attach_enctype_error_multidict) and lets exceptions propagate. The local
   stack's apps run with debug off: an unexpected error is a 500 answer, as from AWS.

`speed_up_moto_server()` applies them; `serve()` runs moto's WSGI app like
moto.server.ThreadedMotoServer does, with the apps made without debug.
"""

from __future__ import annotations

import functools
from typing import Any

_PATCHED = "_outcall_speed"


def speed_up_moto_server() -> None:
    import moto.backends as backends
    import moto.core.responses as responses

    if getattr(backends, _PATCHED, False):
        return
    modules = tuple(backends.list_of_moto_modules())
    backends.list_of_moto_modules = lambda: modules
    responses.method_names_from_class = functools.lru_cache(maxsize=None)(responses.method_names_from_class)
    setattr(backends, _PATCHED, True)


def create_app_without_debug(service: Any) -> Any:
    from moto.moto_server.werkzeug_app import create_backend_app

    app = create_backend_app(service)
    app.debug = False
    return app


def make_server(host: str, port: int) -> Any:
    """A threaded WSGI server of moto's apps (not yet serving)."""
    from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler
    from werkzeug.serving import make_server as werkzeug_server

    app = DomainDispatcherApplication(create_app_without_debug)
    return werkzeug_server(host, port, app, threaded=True, request_handler=MotoRequestHandler)
