-- Run once by the postgres:15 image on an empty data directory (docker-compose.yml).
-- The privilege split of docs/architecture.md: amply_owner owns the schema and runs
-- migrations; amply_app is what the service connects as (SELECT and INSERT on the ledger).
-- Change these passwords, and those in docker-compose.yml, for anything but a local trial.
CREATE ROLE amply_owner LOGIN PASSWORD 'amply_owner_password';
CREATE ROLE amply_app LOGIN PASSWORD 'amply_app_password';
CREATE DATABASE amply OWNER amply_owner ENCODING 'UTF8' TEMPLATE template0;
