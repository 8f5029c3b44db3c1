"""Staff accounts and console sign-in: who the person is and what they may do.

Design note. The staff listener has always taken bearer tokens (:mod:`relay.staff_auth`)
for the office's own systems. People use the console in a browser instead, so this
package adds *accounts* and *sessions* beside the tokens, and both end in the same
:class:`~relay.staff_auth.StaffClaims` on the request: every staff handler works
unchanged, and what a caller may do is decided in one place, the permission map of
:mod:`relay.permissions`.

Modules, imported one way (web → policy/passwords/totp → store)::

    store      the staff directory file (accounts, sessions, failed sign-ins, journal)
    passwords  argon2id hashing
    policy     account names, lockout, per-address throttle, session expiry (pure)
    totp       the optional TOTP second factor
    web        /login, /console/v1/session, /console/v1/me, the session check,
               the journal of staff requests
    testing    helpers for tests: make an account, sign a client or a browser in

Where the trail is kept: sign-ins and staff requests go to the *staff journal* in the
staff directory file, not to the node's Merkle audit log. The audit log holds facts the
node must prove to partners (packets, receipts, licences) and its leaf formats are part
of the protocol; who clicked what at a desk is the office's own business, held next to
the accounts, with the account name on every line.
"""

__all__: list[str] = []
