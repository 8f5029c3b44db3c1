"""``tongban demo``: a local three-province federation, scripted end to end.

The demo is a *shell* around the real pieces, not a second implementation: the
development PKI (:mod:`certs.pki`), the signing core (:mod:`signing`), the agreements
(:mod:`agreements`) and real ``tongban serve`` processes driven through their staff API
(:class:`relay.staff_client.StaffClient`). Each step prints, in Chinese and English,
what it did and, on ``✓`` lines, what it *proved* — every ✓ is a check that ran and
could have failed.

Layout::

    workdir.py   the work folder: created fresh each run, deleted only if it holds the
                 demo's marker file
    report.py    bilingual output (step headings, info lines, ✓ proofs)
    offices.py   the three offices and their federations (湖北, 江苏, 山东)
    context.py   :class:`Demo`, the state the steps share (paths, ports, processes)
    nodes.py     node.toml writing, ``tongban serve`` subprocesses, readiness, shutdown
    trust.py     steps 1–2: PKI and the signing core
    agreement.py step 3: the multilateral agreement and authorization decisions
    relaying.py  step 4: three nodes, a case packet with an attachment, receipts
    casework.py  step 5: whole cross-province cases (staff case API, public tracking)
    licensing.py the handling office's status lists, sealed licences, QR codes
    runner.py    the scenario list, the run, the URL listing and the wait for Ctrl-C
    database.py  ``--database``: a PostgreSQL schema per office, and the final check
                 that every office's data is there

A scenario is a tuple of :class:`~relay.demo.runner.Step`; a step is an async function
``(demo, report) -> None`` that raises :class:`StepFailed` when a check does not hold.

Errors::

    DemoError
     ├── NotADemoFolder   the work folder exists and is not the demo's (never deleted)
     ├── NotADemoDatabase the --database is unreachable or holds a schema the demo did
     │                    not make (never dropped)
     └── StepFailed       a check of a step did not hold (the run stops, exit 1)
"""

from __future__ import annotations

from relay.demo.errors import DemoError, NotADemoDatabase, NotADemoFolder, StepFailed

__all__ = ["DemoError", "NotADemoDatabase", "NotADemoFolder", "StepFailed"]
