"""Renderers: rich, Markdown, LaTeX, CSV, HTML (table and page), the figures."""
