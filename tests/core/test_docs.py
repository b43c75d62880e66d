"""The configuration table in docs/configuration.md names exactly the environment variables the settings read."""

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SETTINGS = ROOT / "config" / "settings"
CONFIGURATION = ROOT / "docs" / "configuration.md"
PROCFILE = ROOT / "deploy" / "Procfile"
# django-environ's parsers of a value already read (env.email_url_config(EMAIL_URL)): they read no variable.
PARSERS = {"db_url_config", "email_url_config", "cache_url_config", "search_url_config", "parse_value"}
ROW = re.compile(r"^\|\s*(`[A-Z][A-Z0-9_]*`(?:\s*,\s*`[A-Z][A-Z0-9_]*`)*)\s*\|")


def variables_read(source: str) -> set[str]:
    """Every name passed to ``env(...)`` or ``env.<cast>(...)``; a name that is not a literal fails
    the test, since no table could document it."""
    names = set()
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.Call):
            continue
        function = node.func
        if isinstance(function, ast.Name) and function.id == "env":
            method = "__call__"
        elif (
            isinstance(function, ast.Attribute) and isinstance(function.value, ast.Name) and function.value.id == "env"
        ):
            method = function.attr
        else:
            continue
        if method in PARSERS:
            continue
        first = node.args[0] if node.args else next((k.value for k in node.keywords if k.arg == "var"), None)
        assert isinstance(first, ast.Constant) and isinstance(first.value, str), (
            f"env.{method}() at line {node.lineno} reads a variable whose name is not a literal"
        )
        names.add(first.value)
    return names


def settings_variables() -> dict[str, str]:
    """Variable -> the settings module that reads it."""
    read = {}
    for module in sorted(SETTINGS.glob("*.py")):
        for name in variables_read(module.read_text()):
            read[name] = module.name
    return read


def documented(section: str) -> set[str]:
    """The names in the first column of the table under the ``## section`` heading."""
    text = CONFIGURATION.read_text()
    match = re.search(rf"^## {re.escape(section)}\n(.*?)(?=^## |\Z)", text, re.S | re.M)
    assert match, f"docs/configuration.md has no '## {section}' section"
    names = set()
    for line in match.group(1).splitlines():
        row = ROW.match(line)
        if row:
            names.update(re.findall(r"`([A-Z][A-Z0-9_]*)`", row.group(1)))
    return names


def test_the_reader_finds_every_way_a_settings_module_reads_a_variable():
    source = (
        'A = env("PLAIN")\nB = env.str("TEXT", default="")\nC = env.int("NUMBER", default=1)\n'
        'D = env.bool("FLAG", default=False)\nE = env.float("RATIO", default=0.5)\nF = env.list("ITEMS", default=[])\n'
        'G = env.path("FOLDER", default="/")\nH = env.db_url("DATABASE")\nI = env.email_url_config(B)\n'
    )
    assert variables_read(source) == {"PLAIN", "TEXT", "NUMBER", "FLAG", "RATIO", "ITEMS", "FOLDER", "DATABASE"}


def test_every_variable_the_settings_read_is_documented():
    read = settings_variables()
    missing = sorted(f"{name} ({module})" for name, module in read.items() if name not in documented("Settings"))
    assert not missing, f"read by config/settings but not in docs/configuration.md: {missing}"
    assert "STATIC_ROOT" in read  # the one the README once left out


def test_every_documented_setting_is_read_by_the_settings():
    stale = sorted(documented("Settings") - set(settings_variables()))
    assert not stale, f"in docs/configuration.md's settings table but read by no settings module: {stale}"


def test_every_documented_process_variable_is_passed_by_the_procfile_and_not_read_by_django():
    commands = "\n".join(line for line in PROCFILE.read_text().splitlines() if not line.startswith("#"))
    passed = set(re.findall(r"\$\{([A-Z][A-Z0-9_]*)\}", commands))
    processes = documented("Read by the processes, not the settings")
    assert processes
    assert processes <= passed, f"documented but not in deploy/Procfile: {sorted(processes - passed)}"
    assert not processes & set(settings_variables()), "read by the settings: document it under Settings"
    undocumented = passed - processes - set(settings_variables())
    assert not undocumented, (
        f"deploy/Procfile passes variables docs/configuration.md does not name: {sorted(undocumented)}"
    )
