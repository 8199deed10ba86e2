"""The API documentation pages (/docs/swagger/, /docs/redoc/, /docs/scalar/), made harmless to
the dashboard that shares their host (issue 21, finding 7).

The dashboard keeps the API key in ``localStorage``; a documentation page runs third-party
JavaScript. So:

* Every page is served with ``Content-Security-Policy: sandbox allow-scripts ...`` without
  ``allow-same-origin``: the browser runs it in a unique, opaque origin — another origin than
  the dashboard's. Whatever its scripts do, they cannot read the dashboard's storage or
  cookies, nor call the API with them. (They fetch the public OpenAPI document, which is
  served with ``Access-Control-Allow-Origin: *`` for that reason; "try it out" calls need a
  key typed into the page, as from any other origin.)
* Scripts and styles come from the CDN at exact versions, each with a Subresource Integrity
  hash: a changed file is refused by the browser. The policy allows exactly those URLs and
  the one inline script (by its hash); nothing else loads.
* ``frame-ancestors 'none'`` and ``X-Frame-Options: DENY``: no page may frame them.

The hashes are sha384 of the files in the npm registry's tarballs of the same versions
(``npm pack swagger-ui-dist@5.11.0 redoc@2.5.1 @scalar/api-reference@1.72.1``; the CDN serves
those bytes). To upgrade: change a version, recompute its hash the same way.
"""
from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass

CDN = "https://unpkg.com"


@dataclass(frozen=True)
class Asset:
    url: str
    integrity: str


SWAGGER_JS = Asset(f"{CDN}/swagger-ui-dist@5.11.0/swagger-ui-bundle.js",
                   "sha384-qn5tagrAjZi8cSmvZ+k3zk4+eDEEUcP9myuR2J6V+/H6rne++v6ChO7EeHAEzqxQ")
SWAGGER_PRESET = Asset(f"{CDN}/swagger-ui-dist@5.11.0/swagger-ui-standalone-preset.js",
                       "sha384-SiLF+uYBf9lVQW98s/XUYP14enXJN31bn0zu3BS1WFqr5hvnMF+w132WkE/v0uJw")
SWAGGER_CSS = Asset(f"{CDN}/swagger-ui-dist@5.11.0/swagger-ui.css",
                    "sha384-+yyzNgM3K92sROwsXxYCxaiLWxWJ0G+v/9A+qIZ2rgefKgkdcmJI+L601cqPD/Ut")
REDOC_JS = Asset(f"{CDN}/redoc@2.5.1/bundles/redoc.standalone.js",
                 "sha384-up2uPEo+8XzxuLXKGY4DOk79DbbRclvlcx22QZ60aPWQf8LW69XJ8BWzLFewC05H")
SCALAR_JS = Asset(f"{CDN}/@scalar/api-reference@1.72.1/dist/browser/standalone.js",
                  "sha384-U11tb2XnKvmwt8RlTvnwUnYgrN+ur4Xyh9htLhjajWNR/Oyl5AX5DEz00qRmlrmK")
SCRIPTS = (SWAGGER_JS, SWAGGER_PRESET, REDOC_JS, SCALAR_JS)
STYLES = (SWAGGER_CSS,)

# The only inline script (Swagger UI's start); the spec URL is read from the page, so the
# script's text, and therefore its hash in the policy, never changes.
SWAGGER_START = ("window.onload = function () { window.ui = SwaggerUIBundle({"
                 "url: document.getElementById('swagger-ui').dataset.url, "
                 "dom_id: '#swagger-ui', layout: 'StandaloneLayout', "
                 "presets: [SwaggerUIBundle.presets.apis, SwaggerUIStandalonePreset]}); };")


def _tag(asset: Asset) -> str:
    if asset.url.endswith(".css"):
        return (f'<link rel="stylesheet" href="{asset.url}" integrity="{asset.integrity}" '
                'crossorigin="anonymous">')
    return f'<script src="{asset.url}" integrity="{asset.integrity}" crossorigin="anonymous">' \
           '</script>'


def _page(title: str, body: str, head: str = "") -> str:
    # spectree fills {spec_url}; other braces are doubled for str.format.
    return ('<!doctype html><html><head><meta charset="utf-8"><title>' + title +
            '</title><meta name="viewport" content="width=device-width, initial-scale=1">' +
            head + '</head><body style="margin:0">' + body + '</body></html>')


def _braces(text: str) -> str:
    return text.replace("{", "{{").replace("}", "}}")


PAGE_TEMPLATES: dict[str, str] = {
    "swagger": _page("Model Registry API - Swagger UI",
                     '<div id="swagger-ui" data-url="{spec_url}"></div>' + _tag(SWAGGER_JS) +
                     _tag(SWAGGER_PRESET) + "<script>" + _braces(SWAGGER_START) + "</script>",
                     head=_tag(SWAGGER_CSS)),
    "redoc": _page("Model Registry API - ReDoc",
                   "<redoc spec-url=\"{spec_url}\"></redoc>" + _tag(REDOC_JS)),
    "scalar": _page("Model Registry API - Scalar",
                    '<script id="api-reference" data-url="{spec_url}"></script>' +
                    _tag(SCALAR_JS)),
}


def _sha256(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode() + "'"


CONTENT_SECURITY_POLICY = "; ".join([
    "sandbox allow-scripts allow-popups allow-forms allow-downloads",
    "default-src 'none'",
    "script-src " + " ".join([_sha256(SWAGGER_START)] + [a.url for a in SCRIPTS]),
    "style-src 'unsafe-inline' " + " ".join(a.url for a in STYLES),
    "img-src data: https:",
    "font-src data: https:",
    "connect-src 'self'",
    "worker-src blob:",
    "frame-ancestors 'none'",
    "base-uri 'none'",
    "form-action 'none'",
])

PAGE_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Opener-Policy": "same-origin",
}
