"""Alembic environment: always run with a connection handed over by storage.database."""
from alembic import context

connection = context.config.attributes.get("connection")
if connection is None:
    raise SystemExit("run migrations through storage.database.Database.migrate() "
                     "or `flask --app api.app db upgrade`")
context.configure(connection=connection, target_metadata=None, render_as_batch=True)
context.run_migrations()
