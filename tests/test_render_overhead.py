"""What a report costs besides its figures: lighter kernels, outputs without re-validation."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
import textwrap

import nbformat
import pytest
from nbclient import NotebookClient

from evalterritoire.render import kernel as kernel_module


def _msg(kind: str, content: dict, msg_id: str = "m1") -> dict:
    return {
        "header": {"msg_type": kind, "msg_id": "x"},
        "parent_header": {"msg_id": msg_id},
        "msg_type": kind,
        "content": content,
        "metadata": {},
    }


MESSAGES = [
    _msg(
        "display_data",
        {"data": {"text/html": "<p>a</p>", "text/plain": "<HTML>"}, "metadata": {"x": {"y": 1}}},
    ),
    _msg(
        "execute_result",
        {"data": {"text/plain": "3"}, "metadata": {}, "execution_count": 4},
    ),
    _msg("stream", {"name": "stdout", "text": "bonjour\n"}),
    _msg("error", {"ename": "ValueError", "evalue": "non", "traceback": ["l1", "l2"]}),
    _msg(
        "display_data",
        {"data": {"image/png": "iVBORw0KGgo=", "text/plain": "<Figure>"}, "metadata": {}},
    ),
]


def _shape(node):
    """Keys in order and node types, recursively (what equality alone would not show)."""
    if isinstance(node, dict):
        return (type(node).__name__, [(k, _shape(v)) for k, v in node.items()])
    if isinstance(node, list):
        return ("list", [_shape(v) for v in node])
    return (type(node).__name__, node)


@pytest.mark.parametrize("msg", MESSAGES, ids=lambda m: m["header"]["msg_type"])
def test_output_from_msg_is_nbformats(msg):
    ours = kernel_module._output_from_msg(msg)
    theirs = nbformat.v4.output_from_msg(msg)
    assert ours == theirs
    assert _shape(ours) == _shape(theirs)
    assert json.dumps(ours) == json.dumps(theirs)


def test_output_from_msg_refuses_other_messages():
    with pytest.raises(ValueError, match="Unrecognized output msg type"):
        kernel_module._output_from_msg(_msg("status", {"execution_state": "idle"}))


def _outputs(client_class, messages, *, clear_first=False):
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("x")])
    client = client_class(nb)
    client.reset_execution_trackers()
    client.clear_before_next_output = False  # as nbclient sets it before a cell runs
    outs: list = []
    for index, msg in enumerate(messages):
        if clear_first and index == 2:
            client.clear_before_next_output = True
        display_id = "d1" if index in (0, 3) else None
        client.output(outs, msg, display_id, 0)
    return outs, client._display_id_map


@pytest.mark.parametrize("clear_first", [False, True])
def test_client_outputs_are_nbclients(clear_first):
    ours = _outputs(kernel_module._client_class(), MESSAGES, clear_first=clear_first)
    theirs = _outputs(NotebookClient, MESSAGES, clear_first=clear_first)
    assert ours == theirs
    assert [_shape(o) for o in ours[0]] == [_shape(o) for o in theirs[0]]


def test_client_passes_outputs_to_a_hook():
    client = kernel_module._client_class()(nbformat.v4.new_notebook())
    client.reset_execution_trackers()
    client.clear_before_next_output = False  # as nbclient sets it before a cell runs
    seen = []

    class Hook:
        def output(self, outs, msg, display_id, cell_index):
            seen.append(msg["content"])

    client.register_output_hook("m1", Hook())
    outs: list = []
    assert client.output(outs, MESSAGES[0], None, 0) is None
    assert outs == []
    assert seen == [MESSAGES[0]["content"]]


def _imported_after(code: str) -> dict[str, bool]:
    probe = (
        f"{code}\nimport json, sys\n"
        "print(json.dumps({m: m in sys.modules for m in ('pandas', 'scipy', 'pyarrow')}))"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    ).stdout
    return json.loads(out.strip().splitlines()[-1])


def test_preloaded_modules_leave_pandas_and_scipy_out():
    code = "import importlib\n" + "".join(
        f"importlib.import_module({name!r})\n" for name in kernel_module.PRELOAD_MODULES
    )
    assert _imported_after(code) == {"pandas": False, "scipy": False, "pyarrow": False}


def test_report_and_render_packages_resolve_their_names_lazily():
    imported = _imported_after(
        "import evalterritoire.report as report, evalterritoire.render as render\n"
        "assert all(getattr(report, n) is not None for n in report.__all__)\n"
        "assert all(getattr(render, n) is not None for n in render.__all__)\n"
        "from evalterritoire.report import ReportContext, build_contexts\n"
        "assert ReportContext.__module__ == 'evalterritoire.report.context'\n"
        "assert set(report.__all__) <= set(dir(report))\n"
    )
    assert imported["pandas"]  # the builders import it when asked for


def test_unknown_package_attribute_raises():
    import evalterritoire.render as render
    import evalterritoire.report as report

    for package in (render, report):
        with pytest.raises(AttributeError):
            package.no_such_name  # noqa: B018


def test_warm_kernel_keeps_streams_and_displays_in_order():
    """Streams are flushed before a display only when they hold text: the order is kept."""
    code = textwrap.dedent(
        """
        import sys
        from IPython.display import HTML, display
        display(HTML("<p>d1</p>"))
        print("s1")
        display(HTML("<p>d2</p>"))
        print("e1", file=sys.stderr)
        print("s2")
        display(HTML("<p>d3</p>"))
        display(HTML("<p>d4</p>"))
        print("s3")
        """
    )
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(code) for _ in range(2)])
    kernel = kernel_module.WarmKernel(preload=("IPython.display",))
    try:
        for _ in range(2):  # a fresh kernel, then a reset one
            executed = kernel.execute(copy.deepcopy(nb), timeout=60)
            for cell in executed.cells:
                seen = [
                    (o["output_type"], o.get("name"), o.get("text") or o["data"]["text/html"])
                    for o in cell.outputs
                ]
                assert seen == [
                    ("display_data", None, "<p>d1</p>"),
                    ("stream", "stdout", "s1\n"),
                    ("display_data", None, "<p>d2</p>"),
                    ("stream", "stdout", "s2\n"),  # ipykernel flushes stdout, then stderr
                    ("stream", "stderr", "e1\n"),
                    ("display_data", None, "<p>d3</p>"),
                    ("display_data", None, "<p>d4</p>"),
                    ("stream", "stdout", "s3\n"),
                ]
    finally:
        kernel.close()
