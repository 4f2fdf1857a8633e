/**
 * The API reference at /api/v1/docs: Swagger UI rendering /api/v1/openapi.json, with "Try it out" calling this
 * API. Its script and stylesheet are served from the installed `swagger-ui-dist` package, never a CDN, so the page
 * works offline. They are read from the package at run time (resolved from this module, so from a bundle too): the
 * deployed functions ship those files beside their bundle (infra/plan.ts FUNCTION_COPY_FILES).
 */
import { readFile } from "node:fs/promises";
import { createRequire } from "node:module";

/** The package the page's assets come from. */
export const DOCS_UI_PACKAGE = "swagger-ui-dist";

/** The files of the package the page loads. */
export const DOCS_UI_FILES = ["swagger-ui-bundle.js", "swagger-ui.css"] as const;

/** The page's own files, under /api/v1/docs/, and where each comes from. */
const ASSETS: Record<string, { type: string; file?: string; text?: string }> = {
  "swagger-ui-bundle.js": { type: "text/javascript; charset=utf-8", file: "swagger-ui-bundle.js" },
  "swagger-ui.css": { type: "text/css; charset=utf-8", file: "swagger-ui.css" },
  "init.js": {
    type: "text/javascript; charset=utf-8",
    // Relative URLs: the page is /api/v1/docs, so these resolve under /api/v1/ wherever the API is mounted.
    text: `window.ui = SwaggerUIBundle({
  url: "openapi.json",
  dom_id: "#api-reference",
  deepLinking: true,
  displayOperationId: true,
  displayRequestDuration: true,
  defaultModelsExpandDepth: 0,
  docExpansion: "list",
  persistAuthorization: false,
  withCredentials: true,
  validatorUrl: null,
});
`,
  },
};

export const DOCS_PAGE = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Paper broker API reference</title>
<link rel="icon" href="data:,">
<link rel="stylesheet" href="docs/swagger-ui.css">
<style>body{margin:0} .swagger-ui .topbar{display:none}</style>
</head>
<body>
<div id="api-reference"></div>
<script src="docs/swagger-ui-bundle.js"></script>
<script src="docs/init.js"></script>
</body>
</html>
`;

/**
 * The page's Content-Security-Policy: the app's, plus the stylesheet from this origin and Swagger UI's inline SVG
 * icons (data: URIs in its CSS). Scripts stay same-origin; "Try it out" calls only this origin.
 */
export const DOCS_CSP = {
  defaultSrc: ["'self'"],
  scriptSrc: ["'self'"],
  styleSrc: ["'self'", "'unsafe-inline'"],
  imgSrc: ["'self'", "data:"],
  connectSrc: ["'self'"],
  objectSrc: ["'none'"],
  frameAncestors: ["'none'"],
} satisfies Record<string, string[]>;

const cache = new Map<string, Promise<string>>();

/** One of the page's assets, or undefined for a name it does not have. Read once, then kept. */
export function docsAsset(name: string): Promise<{ type: string; body: string }> | undefined {
  // Own names only: "constructor" or "__proto__" must be a 404 like any other unknown file.
  const asset = Object.hasOwn(ASSETS, name) ? ASSETS[name] : undefined;
  if (asset === undefined) return undefined;
  let body = cache.get(name);
  if (body === undefined) {
    body =
      asset.text !== undefined
        ? Promise.resolve(asset.text)
        : readFile(createRequire(import.meta.url).resolve(`${DOCS_UI_PACKAGE}/${asset.file!}`), "utf8");
    body.catch(() => cache.delete(name));
    cache.set(name, body);
  }
  return body.then((text) => ({ type: asset.type, body: text }));
}
