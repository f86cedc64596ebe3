"""The GitHub Actions workflows follow GitHub's "Security hardening for GitHub Actions".

Every action is pinned to a full commit SHA with its release in a comment; the workflow-wide
token is read-only; a job that can get an OIDC token (and so sign in to Azure) runs only from
main, never for a pull request, and in a GitHub environment whose protection rules gate it;
and a job a pull request can start uses no secrets.

A job's `if` is evaluated here for the events its workflow triggers on, with three-valued
logic: github.ref and github.event_name are known, every other context and function is
unknown, so a job is unreachable only when its condition is false whatever those are.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
WORKFLOWS = sorted((ROOT / ".github" / "workflows").glob("*.y*ml"))
MAIN = "refs/heads/main"

# owner/repo, or owner/repo/path for an action or reusable workflow in a subfolder.
_PINNED = re.compile(r"^[\w.-]+/[\w.-]+(?:/[^@\s]+)?@[0-9a-f]{40}$")
_USES_LINE = re.compile(r"^\s*(?:-\s+)?uses:\s*(?P<ref>[^\s#]+)(?P<rest>.*)$")
_RELEASE_COMMENT = re.compile(r"^\s+#\s*v?\d+(?:\.\d+)*\S*\s*$")


@dataclass(frozen=True)
class Workflow:
    path: Path
    text: str
    body: dict[str | bool, Any]  # `on` reads as the key True

    @property
    def events(self) -> set[str]:
        # YAML 1.1 reads the key `on` as True.
        on = self.body.get("on", self.body.get(True))
        if isinstance(on, str):
            return {on}
        return set(on or ())

    @property
    def jobs(self) -> dict[str, dict[str, Any]]:
        jobs: dict[str, dict[str, Any]] = self.body.get("jobs") or {}
        return jobs


def _load(path: Path) -> Workflow:
    text = path.read_text(encoding="utf-8")
    return Workflow(path, text, yaml.safe_load(text))


def _jobs() -> list[tuple[Workflow, str, dict[str, Any]]]:
    return [(wf, name, job) for wf in map(_load, WORKFLOWS) for name, job in wf.jobs.items()]


def _gets_oidc_token(workflow: Workflow, job: dict[str, Any]) -> bool:
    permissions = job.get("permissions", workflow.body.get("permissions"))
    if permissions == "write-all":
        return True
    return isinstance(permissions, dict) and permissions.get("id-token") == "write"


ALL_JOBS = _jobs()
OIDC_JOBS = [(wf, name, job) for wf, name, job in ALL_JOBS if _gets_oidc_token(wf, job)]


def _ids(jobs: list[tuple[Workflow, str, dict[str, Any]]]) -> list[str]:
    return [f"{wf.path.name}:{name}" for wf, name, _ in jobs]


each_workflow = pytest.mark.parametrize("path", WORKFLOWS, ids=[p.name for p in WORKFLOWS])
each_job = pytest.mark.parametrize(("workflow", "name", "job"), ALL_JOBS, ids=_ids(ALL_JOBS))
each_oidc_job = pytest.mark.parametrize(("workflow", "name", "job"), OIDC_JOBS, ids=_ids(OIDC_JOBS))


# ---------------------------------------------------------------------------------------------
# GitHub expressions, three-valued
# ---------------------------------------------------------------------------------------------


class _Unknown:
    def __repr__(self) -> str:
        return "UNKNOWN"


UNKNOWN = _Unknown()
_TOKEN = re.compile(
    r"\s*(?:(?P<op>&&|\|\||==|!=|<=|>=|[!()<>,])|'(?P<str>(?:[^']|'')*)'"
    r"|(?P<num>-?\d+(?:\.\d+)?)|(?P<name>[A-Za-z_][\w-]*(?:\.[\w*-]+|\[[^\]]*\])*))"
)


def _truth(value: object) -> bool | _Unknown:
    if value is UNKNOWN:
        return UNKNOWN
    return value not in ("", 0, None, False)


class _Expression:
    """A recursive-descent reader of the subset of GitHub's expression syntax `if`s use."""

    def __init__(self, source: str, known: dict[str, str]) -> None:
        self.tokens: list[tuple[str, object]] = []
        position, source = 0, source.strip()
        while position < len(source):
            match = _TOKEN.match(source, position)
            assert match and match.end() > position, f"cannot read {source[position:]!r}"
            position = match.end()
            kind = match.lastgroup
            assert kind is not None
            text = match.group(kind)
            self.tokens.append((kind, text.replace("''", "'") if kind == "str" else text.lower()))
        self.known = {key.lower(): value for key, value in known.items()}

    def value(self) -> object:
        result = self._or()
        assert not self.tokens, f"unread: {self.tokens}"
        return result

    def _peek(self, *ops: str) -> bool:
        return bool(self.tokens) and self.tokens[0][0] == "op" and self.tokens[0][1] in ops

    def _take(self, op: str) -> None:
        assert self._peek(op), f"expected {op!r} at {self.tokens}"
        self.tokens.pop(0)

    def _or(self) -> object:
        terms = [self._and()]
        while self._peek("||"):
            self._take("||")
            terms.append(self._and())
        if len(terms) == 1:
            return terms[0]
        truths = [_truth(term) for term in terms]
        return True if True in truths else UNKNOWN if UNKNOWN in truths else False

    def _and(self) -> object:
        terms = [self._not()]
        while self._peek("&&"):
            self._take("&&")
            terms.append(self._not())
        if len(terms) == 1:
            return terms[0]
        truths = [_truth(term) for term in terms]
        return False if False in truths else UNKNOWN if UNKNOWN in truths else True

    def _not(self) -> object:
        if self._peek("!"):
            self._take("!")
            truth = _truth(self._not())
            return UNKNOWN if truth is UNKNOWN else not truth
        return self._compare()

    def _compare(self) -> object:
        left = self._primary()
        if not self._peek("==", "!=", "<", ">", "<=", ">="):
            return left
        op = str(self.tokens.pop(0)[1])
        right = self._primary()
        if left is UNKNOWN or right is UNKNOWN or op not in ("==", "!="):
            return UNKNOWN
        # GitHub compares strings case-insensitively.
        equal = str(left).lower() == str(right).lower()
        return equal if op == "==" else not equal

    def _primary(self) -> object:
        assert self.tokens, "expression ends early"
        kind, text = self.tokens.pop(0)
        if kind == "op" and text == "(":
            inner = self._or()
            self._take(")")
            return inner
        if kind == "str":
            return text
        if kind == "num":
            return float(str(text))
        assert kind == "name", f"unexpected {text!r}"
        if self._peek("("):  # a function call: its arguments are read, its value unknown
            self._take("(")
            while not self._peek(")"):
                self._or()
                if self._peek(","):
                    self._take(",")
            self._take(")")
            return UNKNOWN
        literals: dict[object, object] = {"true": True, "false": False, "null": None}
        if text in literals:
            return literals[text]
        return self.known.get(str(text), UNKNOWN)


def _runs(job: dict[str, Any], *, ref: str, event: str) -> bool | _Unknown:
    """Whether the job's `if` lets it run for this ref and event (UNKNOWN: it depends)."""
    condition = job.get("if")
    if condition is None:
        return UNKNOWN  # success(): runs when the jobs it needs succeed
    if isinstance(condition, bool):
        return condition
    source = str(condition).strip()
    if source.startswith("${{") and source.endswith("}}"):
        source = source[3:-2]
    return _truth(_Expression(source, {"github.ref": ref, "github.event_name": event}).value())


def test_the_expression_reader_knows_when_a_condition_cannot_hold() -> None:
    main_only = {"if": f"github.ref == '{MAIN}' && (vars.X != '' || vars.Y != '')"}
    assert _runs(main_only, ref="refs/pull/1/merge", event="pull_request") is False
    assert _runs(main_only, ref=MAIN, event="push") is UNKNOWN
    assert _runs({"if": "${{ vars.X != '' }}"}, ref="refs/heads/main", event="push") is UNKNOWN
    either = {"if": f"github.ref == '{MAIN}' || github.event_name == 'workflow_dispatch'"}
    assert _runs(either, ref="refs/heads/feature", event="workflow_dispatch") is True
    assert _runs({"if": "!contains(github.ref, 'x')"}, ref=MAIN, event="push") is UNKNOWN


# ---------------------------------------------------------------------------------------------
# Actions are pinned
# ---------------------------------------------------------------------------------------------


def _uses(workflow: Workflow) -> list[str]:
    found = []
    for job in workflow.jobs.values():
        if "uses" in job:  # a reusable workflow
            found.append(str(job["uses"]))
        found.extend(str(step["uses"]) for step in job.get("steps") or () if "uses" in step)
    return found


def test_the_oidc_checks_have_a_job_to_check() -> None:
    assert WORKFLOWS
    assert OIDC_JOBS, "no job gets an OIDC token: the what-if job should"


@each_workflow
def test_every_action_is_pinned_to_a_full_commit_sha(path: Path) -> None:
    unpinned = [ref for ref in _uses(_load(path)) if not ref.startswith("./")]
    unpinned = [ref for ref in unpinned if not _PINNED.match(ref)]
    assert not unpinned, f"pin to a full 40-hex commit SHA: {unpinned}"


@each_workflow
def test_every_action_names_its_pinned_release_in_a_trailing_comment(path: Path) -> None:
    lines = [_USES_LINE.match(line) for line in path.read_text(encoding="utf-8").splitlines()]
    bare = [
        match.group(0).strip()
        for match in lines
        if match
        and not match["ref"].startswith("./")
        and not (_PINNED.match(match["ref"]) and _RELEASE_COMMENT.match(match["rest"]))
    ]
    assert not bare, f"write `uses: owner/repo@<sha> # v<release>`: {bare}"


# ---------------------------------------------------------------------------------------------
# Token permissions
# ---------------------------------------------------------------------------------------------


@each_workflow
def test_the_workflow_wide_token_is_read_only(path: Path) -> None:
    permissions = _load(path).body.get("permissions")
    # Unset, the token gets the repository's default, which can be read-write.
    assert permissions is not None, "set top-level permissions (e.g. contents: read)"
    if isinstance(permissions, str):
        assert permissions == "read-all"
    else:
        writable = {
            scope: level for scope, level in permissions.items() if level not in ("read", "none")
        }
        assert not writable, f"grant write per job, not workflow-wide: {writable}"


# ---------------------------------------------------------------------------------------------
# Jobs that can sign in to Azure
# ---------------------------------------------------------------------------------------------


@each_oidc_job
def test_jobs_that_get_an_oidc_token_run_only_from_main(
    workflow: Workflow, name: str, job: dict[str, Any]
) -> None:
    assert MAIN in str(job.get("if", "")), "its `if` should check github.ref == 'refs/heads/main'"
    other_refs = ["refs/heads/feature", "refs/tags/v1.0.0", "refs/pull/1/merge"]
    reachable = [
        (event, ref)
        for event in sorted(workflow.events)
        for ref in other_refs
        if _runs(job, ref=ref, event=event) is not False
    ]
    assert not reachable, f"{name} can run off main for {reachable}"


@each_oidc_job
def test_pull_requests_cannot_reach_jobs_that_get_an_oidc_token(
    workflow: Workflow, name: str, job: dict[str, Any]
) -> None:
    # pull_request runs on the merge ref; pull_request_target runs on the base branch (main)
    # with the base's secrets, so only the event name can keep it out.
    pull_request_refs = {"pull_request": "refs/pull/1/merge", "pull_request_target": MAIN}
    reachable = [
        event
        for event, ref in pull_request_refs.items()
        if event in workflow.events and _runs(job, ref=ref, event=event) is not False
    ]
    assert not reachable, f"{name} can run for {reachable}"


@each_oidc_job
def test_jobs_that_get_an_oidc_token_run_in_a_github_environment(
    workflow: Workflow, name: str, job: dict[str, Any]
) -> None:
    environment = job.get("environment")
    if isinstance(environment, dict):
        environment = environment.get("name")
    # The environment's protection rules gate the job, and the OIDC subject names it
    # (repo:<org>/<repo>:environment:<name>), so Azure can trust that environment alone.
    assert environment, f"{name} should run in a GitHub environment"


@each_job
def test_jobs_a_pull_request_can_start_use_no_secrets(
    workflow: Workflow, name: str, job: dict[str, Any]
) -> None:
    pull_request_refs = {"pull_request": "refs/pull/1/merge", "pull_request_target": MAIN}
    reachable = any(
        event in workflow.events and _runs(job, ref=ref, event=event) is not False
        for event, ref in pull_request_refs.items()
    )
    secrets = set(re.findall(r"secrets\.(\w+)", yaml.safe_dump(job))) - {"GITHUB_TOKEN"}
    assert not (reachable and secrets), f"{name} runs for pull requests with {sorted(secrets)}"


def test_the_bicep_build_runs_for_pull_requests() -> None:
    workflow = _load(ROOT / ".github" / "workflows" / "bicep.yml")
    assert "pull_request" in workflow.events
    assert _runs(workflow.jobs["build"], ref="refs/pull/1/merge", event="pull_request") is not False
