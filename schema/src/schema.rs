// The tables as diesel sees them. Only types both backends share: Text, BigInt, Binary, Bool and
// Timestamp (always UTC). Keep in step with migrations/sqlite and migrations/postgres.

diesel::table! {
    /// Every company counted by state, kept by triggers on `credentials` (see the migration).
    connection_counts (state) {
        state -> Text,
        companies -> BigInt,
    }
}

diesel::table! {
    credentials (company) {
        company -> Text,
        application_id -> Nullable<Text>,
        shared_secret -> Nullable<Binary>,
        refresh_token -> Nullable<Binary>,
        key_id -> Nullable<Text>,
        profile_id -> Nullable<BigInt>,
        version -> BigInt,
        state -> Text,
        state_since -> Timestamp,
        created_at -> Timestamp,
        updated_at -> Timestamp,
        updated_by -> Text,
        last_test_id -> Nullable<Text>,
        last_success_at -> Nullable<Timestamp>,
        token_lease_until -> Nullable<Timestamp>,
        token_lease_owner -> Nullable<Text>,
        token_error -> Nullable<Text>,
        token_error_at -> Nullable<Timestamp>,
        token_error_version -> Nullable<BigInt>,
        next_check_at -> Nullable<Timestamp>,
        auth_method -> Text,
        developer_key -> Nullable<Binary>,
        password -> Nullable<Binary>,
        account_id -> Nullable<Text>,
        token_wanted_at -> Nullable<Timestamp>,
        renew_at -> Nullable<Timestamp>,
    }
}

diesel::table! {
    webhook_audit (id) {
        id -> Text,
        webhook_id -> Text,
        at -> Timestamp,
        actor -> Text,
        action -> Text,
        companies -> Text,
    }
}

diesel::table! {
    audit_entries (id) {
        id -> Text,
        company -> Text,
        at -> Timestamp,
        actor -> Text,
        action -> Text,
        fields -> Text,
        version -> Nullable<BigInt>,
        via -> Nullable<Text>,
    }
}

diesel::table! {
    connection_tests (id) {
        id -> Text,
        company -> Text,
        candidate -> Bool,
        outcome -> Text,
        error_code -> Nullable<Text>,
        result -> Text,
        started_at -> Timestamp,
        triggered_by -> Text,
    }
}

diesel::table! {
    access_tokens (company) {
        company -> Text,
        key_id -> Text,
        token -> Binary,
        expires_at -> Timestamp,
        credentials_version -> BigInt,
        obtained_at -> Timestamp,
    }
}

diesel::allow_tables_to_appear_in_same_query!(access_tokens, credentials);

diesel::table! {
    webhooks (id) {
        id -> Text,
        url -> Text,
        events -> Text,
        companies -> Text,
        description -> Nullable<Text>,
        enabled -> Bool,
        key_id -> Text,
        secret -> Binary,
        created_at -> Timestamp,
        created_by -> Text,
    }
}

diesel::table! {
    outbox_events (id) {
        id -> Text,
        event_type -> Text,
        company -> Nullable<Text>,
        body -> Text,
        created_at -> Timestamp,
        seq -> Nullable<BigInt>,
    }
}

diesel::table! {
    webhook_deliveries (id) {
        id -> Text,
        webhook_id -> Text,
        event_id -> Text,
        company -> Text,
        status -> Text,
        attempts -> BigInt,
        next_attempt_at -> Timestamp,
        created_at -> Timestamp,
        delivered_at -> Nullable<Timestamp>,
        locked_until -> Nullable<Timestamp>,
        locked_by -> Nullable<Text>,
    }
}

diesel::table! {
    webhook_attempts (id) {
        id -> Text,
        delivery_id -> Text,
        webhook_id -> Text,
        event_id -> Text,
        event_type -> Text,
        attempt -> BigInt,
        at -> Timestamp,
        status_code -> Nullable<BigInt>,
        duration_ms -> BigInt,
        outcome -> Text,
        error -> Nullable<Text>,
    }
}

diesel::allow_tables_to_appear_in_same_query!(webhook_deliveries, outbox_events, webhooks);

diesel::table! {
    key_checks (key_id) {
        key_id -> Text,
        check_value -> Binary,
        created_at -> Timestamp,
    }
}

diesel::table! {
    credentials_deleted_versions (company) {
        company -> Text,
        version -> BigInt,
    }
}

diesel::table! {
    connect_attempts (state_hash) {
        state_hash -> Text,
        company -> Text,
        caller -> Text,
        application_id -> Text,
        redirect_uri -> Text,
        return_to -> Nullable<Text>,
        created_at -> Timestamp,
        expires_at -> Timestamp,
        used_at -> Nullable<Timestamp>,
    }
}
