"""Browser tests (real JupyterLab + headless Chromium). See README.md."""
