# The HTML report is checked in headless Chromium.
DEPS_PKGS += chromium
