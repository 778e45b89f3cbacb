-- Run once by the postgres image on an empty data volume: one database each for Prefect and MLflow
-- (the names the local stack uses, `reskd stack up`).
CREATE DATABASE reskd_prefect;
CREATE DATABASE reskd_mlflow;
