"""Commented starter policies for ``proctor policy init --oversight high|moderate|light``.

High oversight (compliance, onboarding): the agent assists, a human approves every action.
Moderate (customer support, employee-facing): routine actions run, money and irreversible
ones wait for a human, a share of replies is sampled. Light (workflow automation): runs
within its envelope, failures escalate.
"""

from __future__ import annotations

_COMMON_TESTS = """\
tests:
  - action: {agent: my-agent, tool: delete_everything, args: {}}
    expect: deny   # anything outside the envelope is refused
"""

STARTERS = {
    "high": """\
# Starter policy: HIGH oversight (e.g. compliance screening, onboarding).
# The agent is at stage 1 (assisted): it proposes, a human approves every action.
policy: my-policy
defaults: {decision: deny, review_timeout: 8h, on_timeout: deny, queue: reviewers}
queues:
  reviewers: {roles: [compliance_officer], sla: 1h, escalate_to: leads}
  leads: {roles: [compliance_lead], quorum: 2}
agents:
  my-agent:
    oversight: high
    autonomy: 1            # 1 assisted: every action waits for a human
    tools: [read_record, update_record]
    data: [records]
rules:
  - id: in-envelope
    when: tool in ["read_record", "update_record"]
    decide: allow          # stage 1 still sends it to a human
tests:
  - action: {agent: my-agent, tool: read_record, args: {id: "r1"}}
    expect: review
"""
    + _COMMON_TESTS.replace("tests:\n", ""),
    "moderate": """\
# Starter policy: MODERATE oversight (e.g. customer support).
# Routine actions run; money and irreversible actions wait for a human; 5% of replies are
# sampled for QA; an unsure agent asks.
policy: my-policy
defaults: {decision: deny, review_timeout: 4h, on_timeout: deny, queue: team}
queues:
  team: {roles: [team_lead], sla: 30m, escalate_to: managers}
  managers: {roles: [manager]}
  qa: {roles: [qa_lead]}
agents:
  my-agent:
    oversight: moderate
    autonomy: 3            # 3 controlled autonomy: low-risk actions run
    tools: [lookup, reply, refund]
    data: [orders, customers.contact]
    limits: {refund: {per_hour: 50, cost_per_day: 5000}}
risk: "(has(args.amount) ? args.amount / 1000.0 : 0.0) + (action.reversible ? 0.0 : 0.3)"
rules:
  - id: routine
    when: tool in ["lookup", "reply", "refund"]
    decide: allow
  - id: money
    when: tool == "refund" && args.amount > 100.0
    decide: review
    reason: Refunds over 100 need a team lead
  - id: irreversible
    when: "!action.reversible"
    decide: review
  - id: unsure
    when: has(context.confidence) && context.confidence < 0.7
    decide: review
  - id: qa
    when: tool == "reply"
    decide: allow
    sample: 0.05
    queue: qa
tests:
  - action: {agent: my-agent, tool: refund, args: {amount: 20.0}}
    expect: allow
  - action: {agent: my-agent, tool: refund, args: {amount: 250.0}}
    expect: review
"""
    + _COMMON_TESTS.replace("tests:\n", ""),
    "light": """\
# Starter policy: LIGHT oversight (e.g. internal workflow automation).
# The agent runs within its envelope (stage 4, strategic autonomy); when an action fails,
# a human decides what happens next.
policy: my-policy
defaults: {decision: deny, review_timeout: 24h, on_timeout: deny, queue: ops}
queues:
  ops: {roles: [ops_engineer], sla: 4h}
agents:
  my-agent:
    oversight: light
    autonomy: 4            # 4 strategic autonomy: runs; failures escalate to ops
    tools: [sync_records, send_report]
    data: [reports]
    limits: {"*": {per_minute: 120}}
rules:
  - id: in-envelope
    when: tool in ["sync_records", "send_report"]
    decide: allow
tests:
  - action: {agent: my-agent, tool: send_report, args: {}}
    expect: allow
"""
    + _COMMON_TESTS.replace("tests:\n", ""),
}


def starter(oversight: str) -> str:
    return STARTERS[oversight]
