"""The stack's two PostgreSQL databases (Prefect's and MLflow's): created on ``up``, dropped on purge."""

from __future__ import annotations

from urllib.parse import urlsplit

from reskd_stack.settings import StackSettings


def _admin_sql(s: StackSettings, statements: list[tuple[str, str]]) -> None:
    """Run ``(check, statement)`` pairs on the server's ``postgres`` database, outside a transaction
    (CREATE/DROP DATABASE need that); a statement runs only when its check query returns no row."""
    import psycopg2

    u = urlsplit(s.postgres_url)
    try:
        conn = psycopg2.connect(
            host=u.hostname,
            port=u.port or 5432,
            user=u.username or "postgres",
            dbname="postgres",
            connect_timeout=10,
        )
    except psycopg2.OperationalError as e:
        raise RuntimeError(f"cannot reach PostgreSQL at {s.postgres_url}: {e}") from None
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            for check, statement in statements:
                cur.execute(check)
                if cur.fetchone() is None:
                    cur.execute(statement)
    finally:
        conn.close()


def _check_db(db: str) -> str:
    return f"SELECT 1 FROM pg_database WHERE datname = '{db}'"


def ensure_databases(s: StackSettings) -> None:
    """Create the Prefect and MLflow databases unless they exist."""
    _admin_sql(s, [(_check_db(db), f'CREATE DATABASE "{db}"') for db in (s.prefect_db, s.mlflow_db)])


def drop_databases(s: StackSettings) -> None:
    """Drop the Prefect and MLflow databases (if they exist), closing their connections."""
    _admin_sql(
        s,
        [
            ("SELECT WHERE false", f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')
            for db in (s.prefect_db, s.mlflow_db)
        ],
    )
