"""Where a node keeps its tables: the embedded SQLite files (the default) or one
PostgreSQL database shared by several workers of the same node.

- :mod:`relay.db.settings` — the ``[database]`` table of the node configuration;
- :mod:`relay.db.pg` — a PostgreSQL connection that runs the portable SQL the stores
  write (``?`` placeholders, explicit ``BEGIN``/``COMMIT``), so one store class can
  serve both backends where the SQL is the same;
- :mod:`relay.db.migrations` — versioned schemas per component, applied at start and
  by ``tongban db migrate``; a database newer than the code is refused;
- :mod:`relay.db.cluster` — a throwaway PostgreSQL cluster (``initdb``/``pg_ctl`` in a
  temporary directory) for the tests, the benchmarks and the demo;
- :mod:`relay.db.from_sqlite` — moving an office's SQLite data into an empty PostgreSQL
  database, verified before it commits (``tongban db migrate-from-sqlite``).
"""
