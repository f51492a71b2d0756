"""Which logo files a benchmark may show: raster images only. An SVG can carry scripts,
so it is neither kept at import nor served."""

LOGO_TYPES = {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg",
              ".gif": "image/gif", ".webp": "image/webp"}
