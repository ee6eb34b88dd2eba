"""The page, its assets, the favicon and ``/docs`` (Swagger UI from local files: no CDN)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import FastAPI, HTTPException
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import FileResponse, HTMLResponse

STATIC = Path(__file__).resolve().parent / "static"

SWAGGER_FILES = ("swagger-ui-bundle.js", "swagger-ui.css")


def _swagger_assets() -> Path | None:
    """The folder of Swagger UI's files shipped by ``swagger-ui-bundle-v2`` (the serve extra),
    None when that package is absent."""
    try:
        from swagger_ui_bundle import swagger_ui_path
    except ImportError:
        return None
    folder = Path(str(swagger_ui_path))
    return folder if all((folder / name).is_file() for name in SWAGGER_FILES) else None


def add_page_routes(app: FastAPI) -> None:
    """``/``, ``/static/{name}`` (the files of ``static/`` only), ``/favicon.ico``, ``/docs``."""

    @app.get("/", include_in_schema=False)
    def page() -> FileResponse:
        return FileResponse(STATIC / "index.html")

    @app.get("/static/{name}", include_in_schema=False)
    def asset(name: str) -> FileResponse:
        allowed = {p.name for p in STATIC.iterdir()}
        if name not in allowed:
            raise HTTPException(404, "no such asset")
        return FileResponse(STATIC / name)

    @app.get("/favicon.ico", include_in_schema=False)
    def favicon() -> FileResponse:
        return FileResponse(STATIC / "favicon.svg", media_type="image/svg+xml")

    swagger = _swagger_assets()

    @app.get("/docs", include_in_schema=False)
    def docs() -> HTMLResponse:
        """Swagger UI from the swagger-ui-bundle-v2 package's files (a CDN only without it)."""
        local: dict[str, Any] = (
            {
                "swagger_js_url": f"/docs/{SWAGGER_FILES[0]}",
                "swagger_css_url": f"/docs/{SWAGGER_FILES[1]}",
            }
            if swagger
            else {}
        )
        return get_swagger_ui_html(
            openapi_url=app.openapi_url or "/openapi.json",
            title=f"{app.title}: API",
            swagger_favicon_url="/favicon.ico",
            **local,
        )

    @app.get("/docs/{name}", include_in_schema=False)
    def docs_asset(name: str) -> FileResponse:
        if swagger is None or name not in SWAGGER_FILES:
            raise HTTPException(404, "no such asset")
        return FileResponse(swagger / name)
