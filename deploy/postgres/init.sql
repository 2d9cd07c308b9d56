-- PostgreSQL for the CRM event store, server mode.
-- Run once as a superuser: psql -f deploy/postgres/init.sql
-- The services apply their own schema migrations at start (sqlx migrations embedded in
-- the binaries); this file only creates the database and the owner role.
CREATE ROLE crm_owner LOGIN;
CREATE DATABASE crm OWNER crm_owner;
-- Least-privilege roles (writer may only append, projectors write read models,
-- analysts read documented views) arrive with the audit and access-control work.
