-- Run once by the postgres image on an empty volume; POSTGRES_DB already created `prefect`.
CREATE DATABASE mlflow;
CREATE DATABASE mlflow_auth;
