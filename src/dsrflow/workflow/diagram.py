"""Mermaid state diagrams drawn from the definitions."""

from __future__ import annotations

from dsrflow.workflow.definitions import ANY_OPEN_STATE, WorkflowDef


def mermaid(wf: WorkflowDef) -> str:
    open_states = [name for name, state in wf.states.items() if not state.terminal]
    lines = ["stateDiagram-v2", f"    %% {wf.id}: {wf.title.en}", f"    [*] --> {wf.initial}"]
    seen: set[tuple[str, str, str]] = set()
    for t in wf.transitions:
        for source in open_states if ANY_OPEN_STATE in t.source else t.source:
            edge = (source, t.dest, t.trigger)
            if edge not in seen:
                seen.add(edge)
                lines.append(f"    {source} --> {t.dest}: {t.trigger}")
    lines += [f"    {name} --> [*]" for name in wf.terminal_states]
    return "\n".join(lines) + "\n"
