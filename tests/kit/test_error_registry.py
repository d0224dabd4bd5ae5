"""Error codes are a closed set: every code written in src is an ``ErrorCode`` sent with the
status of the error that carries it, an unregistered code cannot be raised, and a route that
answers a code it does not declare is caught."""

from __future__ import annotations

import ast
import importlib
import logging
import pkgutil
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI

import amply
from amply.kit.error_responses import at, error_responses, install_error_handlers
from amply.kit.errors import ERROR_STATUSES, AmplyError, Conflict, ErrorCode, NotFound

SOURCE = Path(amply.__file__).parent


def _error_classes() -> dict[str, type[AmplyError]]:
    """Every AmplyError subclass in src, by class name (after importing every module)."""
    for module in pkgutil.walk_packages([str(SOURCE)], "amply."):
        importlib.import_module(module.name)
    found: dict[str, type[AmplyError]] = {}
    pending: list[type[AmplyError]] = [AmplyError]
    while pending:
        cls = pending.pop()
        assert found.setdefault(cls.__name__, cls) is cls, f"two error classes {cls.__name__}"
        pending.extend(cls.__subclasses__())
    return found


def _written_codes() -> Iterator[tuple[str, str, str | None, str]]:
    """(code, where, error class name or None, how) for each code literal in src."""
    for path in sorted(SOURCE.rglob("*.py")):
        where = str(path.relative_to(SOURCE))
        tree = ast.parse(path.read_text("utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.ClassDef):
                for statement in node.body:
                    if (
                        isinstance(statement, ast.Assign)
                        and any(
                            isinstance(target, ast.Name) and target.id == "default_code"
                            for target in statement.targets
                        )
                        and isinstance(statement.value, ast.Constant)
                    ):
                        yield statement.value.value, where, node.name, "default_code"
            if not isinstance(node, ast.Call):
                continue
            for keyword in node.keywords:
                if keyword.arg != "code" or not isinstance(keyword.value, ast.Constant):
                    continue
                function = node.func
                name = (
                    function.id
                    if isinstance(function, ast.Name)
                    else function.attr
                    if isinstance(function, ast.Attribute)
                    else None
                )
                yield keyword.value.value, f"{where}:{node.lineno}", name, "code="


def test_every_code_in_src_is_registered_with_its_errors_status() -> None:
    classes = _error_classes()
    written = list(_written_codes())
    assert len(written) > 80
    problems = []
    for code, where, class_name, how in written:
        registered = ErrorCode.of(code)
        if registered is None:
            problems.append(f"{where}: {how} {code!r} is not an ErrorCode")
            continue
        error = classes.get(class_name or "")
        if error is not None and error.status_code not in registered.statuses:
            problems.append(
                f"{where}: {code!r} raised as {class_name} ({error.status_code}), "
                f"registered for {registered.statuses}"
            )
    assert problems == []


def test_every_error_class_default_code_is_registered_for_its_status() -> None:
    for name, error in _error_classes().items():
        registered = ErrorCode.of(error.default_code)
        assert registered is not None, name
        assert error.status_code in registered.statuses, name


def test_an_unregistered_code_cannot_be_raised() -> None:
    with pytest.raises(ValueError, match="not an ErrorCode"):
        Conflict("taken", code="name_taken")
    with pytest.raises(ValueError, match="registered for"):
        NotFound("no", code="slug_taken")  # a 409 code on a 404
    assert Conflict("taken", code=ErrorCode.SLUG_TAKEN).code == "slug_taken"


def test_each_code_has_a_meaning_and_known_statuses() -> None:
    values = [code.value for code in ErrorCode]
    assert len(values) == len(set(values))
    for code in ErrorCode:
        assert code.meaning
        assert code.status in ERROR_STATUSES, code
        assert all(status in ERROR_STATUSES for status in code.statuses), code


def test_error_responses_groups_codes_under_their_statuses() -> None:
    responses = error_responses(401, ErrorCode.SLUG_TAKEN, at(422, ErrorCode.INVALID_CREDENTIALS))
    assert set(responses) == {401, 409, 422}
    assert "`slug_taken`" in responses[409]["description"]
    assert "`invalid_credentials`" in responses[422]["description"]
    assert "`invalid_credentials`" not in responses[401]["description"]
    with pytest.raises(ValueError, match="not sent with"):
        at(404, ErrorCode.SLUG_TAKEN)


def test_the_docs_list_every_code_with_its_status_and_meaning() -> None:
    table = (SOURCE.parents[1] / "docs" / "errors.md").read_text("utf-8").split("## Every code")[1]
    rows = [line for line in table.splitlines() if line.startswith("| `")]
    assert rows == [
        f"| `{code}` | {', '.join(str(status) for status in code.statuses)} | {code.meaning} |"
        for code in ErrorCode
    ]


def _app() -> FastAPI:
    app = FastAPI()
    install_error_handlers(app)

    @app.get("/declared", responses=error_responses(ErrorCode.SLUG_TAKEN))
    async def declared() -> None:
        raise Conflict("taken", code="slug_taken")

    @app.get("/undeclared", responses=error_responses(404))
    async def undeclared() -> None:
        raise Conflict("taken", code="slug_taken")

    return app


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=_app(), raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://amply.test") as client:
        yield client


async def test_an_undeclared_code_is_logged(
    http: httpx.AsyncClient, caplog: pytest.LogCaptureFixture, undeclared_error_codes: list[str]
) -> None:
    with caplog.at_level(logging.WARNING, logger="amply.kit.error_responses"):
        assert (await http.get("/declared")).status_code == 409
        assert undeclared_error_codes == []
        response = await http.get("/undeclared")
    # The client gets the error as ever; the log says the route did not declare it.
    assert response.json()["error"]["code"] == "slug_taken"
    assert undeclared_error_codes == ["undeclared_error_code slug_taken on GET /undeclared"]
    assert "undeclared_error_code" in caplog.text
    undeclared_error_codes.clear()  # provoked on purpose: not a failure of this test
