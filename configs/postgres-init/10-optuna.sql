-- Runs once, when the postgres volume is first initialised: the database the tuner's Optuna
-- study lives in. Optuna keeps its own alembic_version table, so it cannot share MLflow's.
-- On a volume created before this file existed, run it by hand:
--   docker compose exec postgres psql -U "$POSTGRES_USER" -d "$POSTGRES_DB" -c 'CREATE DATABASE optuna'
CREATE DATABASE optuna;
