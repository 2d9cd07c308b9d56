-- PostgreSQL for the CRM event store, server mode.
-- Run once as a superuser: psql -f deploy/postgres/init.sql
-- Then, as crm_owner, migrate (schema, roles, grants, views, row-level security):
--   CRM_STORE_URL=postgres://crm_owner@db/crm CRM_READ_URL=postgres://crm_owner@db/crm crm db migrate
-- and run the services as the login roles below with CRM_MIGRATE=off: nobody but the
-- migration connects as the owner of the tables (docs/operations.md, "Database roles").
CREATE ROLE crm_owner LOGIN;
CREATE DATABASE crm OWNER crm_owner;

-- The group roles (crm_writer, crm_relay, crm_query, crm_auditor, crm_projector,
-- crm_analyst, crm_manager) are created by `crm db migrate`; create them here too so the
-- logins can be made before the first migration. Set passwords (or use your identity
-- provider) for every login.
DO $$
DECLARE r text;
BEGIN
    FOREACH r IN ARRAY ARRAY['crm_writer', 'crm_relay', 'crm_query', 'crm_auditor',
                             'crm_projector', 'crm_analyst', 'crm_manager'] LOOP
        BEGIN
            EXECUTE format('CREATE ROLE %I NOLOGIN', r);
        EXCEPTION WHEN duplicate_object THEN NULL;
        END;
    END LOOP;
END $$;
CREATE ROLE crm_command_service LOGIN IN ROLE crm_writer;   -- command service
CREATE ROLE crm_scheduler LOGIN IN ROLE crm_writer;         -- scheduler
CREATE ROLE crm_relay_service LOGIN IN ROLE crm_relay;      -- relay
CREATE ROLE crm_projector_service LOGIN IN ROLE crm_projector; -- projectors
CREATE ROLE crm_query_service LOGIN IN ROLE crm_query;      -- query service
