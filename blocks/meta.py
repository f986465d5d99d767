"""What the Prefect UI's block catalog shows beside every block type of this project.

Prefect's client checks both URLs as http(s) URLs (no data: URL), so the logo is Mailu's own mark
at a fixed commit of Mailu's repository (the tag the lab builds, 2024.06.9): it cannot change
under us. The documentation link is the setup guide's section on blocks.
"""

from __future__ import annotations

from typing import Any

LOGO_URL: Any = (  # Any: Block declares the ClassVar as HttpUrl and accepts a str at runtime
    "https://raw.githubusercontent.com/Mailu/Mailu/2df224b284d04fd5a4ff7133ff6a4fd88e7b373e/"
    "docs/assets/logomarkv2.png"
)
DOCS_PAGE = "docs/setup.md"
DOCS_ANCHOR = "6-blocks-credentials-created-from-files-and-environment-variables"
DOCS_URL: Any = f"https://github.com/inlock-ai/mailu-flows/blob/main/{DOCS_PAGE}#{DOCS_ANCHOR}"
