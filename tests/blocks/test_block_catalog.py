"""What Prefect's block catalog shows (logo, docs link, code example), how Prefect finds the block types
(the `prefect.collections` entry point, `prefect block register -m`), and what a shell pointed at the
wrong Prefect server is told."""

from __future__ import annotations

import inspect
import re
import tomllib
import uuid
from importlib import import_module
from importlib.metadata import entry_points
from pathlib import Path

import pytest
from prefect.blocks.core import Block
from prefect.settings import PREFECT_API_URL, temporary_settings

from mailu_flows.blocks import BLOCK_TYPES, BlockNotFound, SshHost, load_block
from mailu_flows.blocks.meta import DOCS_ANCHOR, DOCS_PAGE
from mailu_flows.blocks.registry import LAB_API_URL
from mailu_flows.cli import main

ROOT = Path(__file__).resolve().parents[2]
IDS = [t.get_block_type_slug() for t in BLOCK_TYPES]


def github_anchor(heading: str) -> str:
    """The anchor GitHub gives a Markdown heading."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


@pytest.mark.parametrize("block_type", BLOCK_TYPES, ids=IDS)
def test_block_type_has_logo_docs_link_and_an_example_that_imports(block_type: type[Block]) -> None:
    spec = block_type._to_block_type()
    assert str(spec.logo_url).startswith("https://raw.githubusercontent.com/Mailu/Mailu/")
    assert re.search(r"/[0-9a-f]{40}/", str(spec.logo_url)), "the logo is pinned to a commit"
    assert str(spec.documentation_url).endswith(f"/{DOCS_PAGE}#{DOCS_ANCHOR}")

    example = block_type.get_code_example() or ""
    assert example != block_type._generate_code_example(), "a code example of our own, not Prefect's default"
    imports = [line for line in example.splitlines() if line.startswith(("from ", "import "))]
    assert imports, example
    namespace: dict[str, object] = {}
    exec("\n".join(imports), namespace)  # the example's imports work from the installed package
    assert namespace[block_type.__name__] is block_type
    assert f'{block_type.__name__}.load("BLOCK_NAME")' in example


def test_docs_link_points_at_a_heading_of_the_setup_guide() -> None:
    headings = [
        line.lstrip("#") for line in (ROOT / DOCS_PAGE).read_text().splitlines() if line.startswith("#")
    ]
    assert DOCS_ANCHOR in {github_anchor(h) for h in headings}


def test_entry_point_names_the_module_that_holds_every_block_type() -> None:
    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["entry-points"]
    module_name = declared["prefect.collections"]["mailu_flows"]
    installed = {ep.name: ep.value for ep in entry_points(group="prefect.collections")}
    assert installed.get("mailu_flows") == module_name, "reinstall: pip install -e ."

    # What `prefect block register -m <module>` and the server's start-up registration see in it.
    module = import_module(module_name)
    found = {cls for _, cls in inspect.getmembers(module) if Block.is_block_class(cls)}
    assert found == set(BLOCK_TYPES)


def test_lab_api_url_in_the_hint_is_the_labs() -> None:
    from lab.endpoints import PREFECT_API_URL as LAB

    assert LAB_API_URL == LAB


def test_a_missing_block_names_the_server_asked_and_how_to_point_at_the_labs(prefect_api: str) -> None:
    name = f"absent-{uuid.uuid4().hex[:8]}"
    with pytest.raises(BlockNotFound) as caught:
        load_block(SshHost, name)
    message = str(caught.value)
    assert f"no mailu-ssh-host block named '{name}' on the Prefect server at {prefect_api}" in message
    assert f"mailu-flows blocks create ssh-host {name}" in message
    assert "export PREFECT_API_URL=http://127.0.0.1:4200/api" in message


def test_an_unreachable_server_is_named() -> None:
    with (
        temporary_settings({PREFECT_API_URL: "http://127.0.0.1:9/api"}),
        pytest.raises(BlockNotFound) as caught,
    ):
        load_block(SshHost, "anything")
    message = str(caught.value)
    assert "the Prefect server at http://127.0.0.1:9/api (PREFECT_API_URL) does not answer" in message
    assert "export PREFECT_API_URL=http://127.0.0.1:4200/api" in message


def test_without_prefect_api_url_the_message_says_so() -> None:
    from mailu_flows.blocks.registry import prefect_server

    with temporary_settings(restore_defaults={PREFECT_API_URL}):
        assert prefect_server() == "a temporary Prefect server of this process (PREFECT_API_URL is not set)"


def test_blocks_check_names_the_server_for_each_missing_block(
    prefect_api: str, capsys: pytest.CaptureFixture[str]
) -> None:
    # The example config names inlock-* blocks, which the test server does not hold.
    code = main(["blocks", "check", "--config", str(ROOT / "examples" / "inlock.ai.yaml")])
    out = capsys.readouterr()
    assert code == 1
    assert f"on the Prefect server at {prefect_api} (PREFECT_API_URL)" in out.out
    missing = [line for line in out.err.splitlines() if line.strip().startswith("MISSING")]
    assert [line.split()[1].rstrip(":") for line in missing] == [
        "mailu-ssh-host/inlock-ssh",
        "mailu-cloudflare/inlock-cloudflare",
        "mailu-gpg-public-key/inlock-backup-gpg-public",
        "mailu-gpg-private-key/inlock-backup-gpg-private",
        "mailu-backup-signing-key/inlock-backup-signing",
        "mailu-secrets/inlock-mailu-secrets",
    ]
    assert all("export PREFECT_API_URL=http://127.0.0.1:4200/api" in line for line in missing)


def test_blocks_create_says_which_server_did_not_answer(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with temporary_settings({PREFECT_API_URL: "http://127.0.0.1:9/api"}):
        code = main(["blocks", "create", "secrets", "absent"])
    err = capsys.readouterr().err
    assert code == 1
    assert "not saved: the Prefect server at http://127.0.0.1:9/api (PREFECT_API_URL) does not answer" in err
