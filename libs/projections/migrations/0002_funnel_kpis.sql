-- Facts for the lifecycle funnel and the manager KPIs (docs/read-models.md). Each row is
-- one fact read off one event; the funnel and KPI figures are computed from them
-- (libs/projections/src/funnel.rs, kpi.rs) with the formulas of DOMAIN.md.

-- Every stage a customer was in: [from_us, to_us), to_us NULL while it lasts.
CREATE TABLE rm_stage_periods (
    customer_id    TEXT NOT NULL,
    start_version  BIGINT NOT NULL,
    stage          TEXT NOT NULL,
    from_us        BIGINT NOT NULL,
    to_us          BIGINT,
    PRIMARY KEY (customer_id, start_version)
);

-- Every move between stages (from_stage NULL: the stage at registration), with the owner
-- at that instant (who gets the credit).
CREATE TABLE rm_stage_transitions (
    customer_id  TEXT NOT NULL,
    version      BIGINT NOT NULL,
    from_stage   TEXT,
    to_stage     TEXT NOT NULL,
    at_us        BIGINT NOT NULL,
    reactivated  BIGINT NOT NULL,
    owner_id     TEXT,
    PRIMARY KEY (customer_id, version)
);
CREATE INDEX rm_stage_transitions_at_idx ON rm_stage_transitions (at_us);

-- Every recorded contact.
CREATE TABLE rm_contacts (
    customer_id  TEXT NOT NULL,
    version      BIGINT NOT NULL,
    manager_id   TEXT NOT NULL,
    by_owner     BIGINT NOT NULL,
    channel      TEXT NOT NULL,
    outcome      TEXT NOT NULL,
    at_us        BIGINT NOT NULL,
    PRIMARY KEY (customer_id, version)
);
CREATE INDEX rm_contacts_manager_idx ON rm_contacts (manager_id, at_us);

-- Every complaint, updated as it is worked.
CREATE TABLE rm_complaints (
    complaint_id           TEXT PRIMARY KEY,
    customer_id            TEXT NOT NULL,
    owner_id               TEXT,
    severity               TEXT NOT NULL,
    logged_at_us           BIGINT NOT NULL,
    first_response_s       BIGINT,
    first_response_in_sla  BIGINT,
    resolved_at_us         BIGINT,
    resolution_s           BIGINT,
    resolution_in_sla      BIGINT,
    resolved_by            TEXT,
    resolutions            BIGINT NOT NULL,
    resolution_breaches    BIGINT NOT NULL,
    reopens                BIGINT NOT NULL,
    escalations            BIGINT NOT NULL,
    closed_at_us           BIGINT,
    satisfaction           BIGINT
);
CREATE INDEX rm_complaints_owner_idx ON rm_complaints (owner_id, logged_at_us);

-- Referrals: the referrer earns the credit.
CREATE TABLE rm_referrals (
    referral_id      TEXT PRIMARY KEY,
    customer_id      TEXT NOT NULL,
    referrer         TEXT NOT NULL,
    referred_to      TEXT NOT NULL,
    recorded_at_us   BIGINT NOT NULL,
    converted_at_us  BIGINT
);

-- Purchases: contribution under management.
CREATE TABLE rm_purchases (
    purchase_id   TEXT PRIMARY KEY,
    customer_id   TEXT NOT NULL,
    manager_id    TEXT,
    product_line  TEXT NOT NULL,
    amount_minor  BIGINT NOT NULL,
    currency      TEXT NOT NULL,
    at_us         BIGINT NOT NULL
);
