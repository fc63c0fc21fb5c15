//! The sync-semantics conformance suite: every scenario is written once against
//! the [`harness::Harness`] trait and instantiated per engine (and, later, per
//! mix of engines) by [`conformance_suite!`], as tests named
//! `<engine>::<sentence>`.
//!
//! Adding an engine: implement `Harness`/`TestDb` for it (see
//! `sqlite_harness.rs`) and add a module invoking `conformance_suite!` with an
//! expression that starts the harness, e.g.
//! `mod postgres { crate::conformance_suite!(crate::postgres_harness::PgHarness::start(), 8); }`.

// A panic is how a test reports; unwrapping is the point here.
#![allow(clippy::unwrap_used)]

mod harness;
mod mixed_harness;
mod mysql_harness;
#[path = "../support/pg_service.rs"]
mod pg_service;
mod postgres_harness;
mod scenarios;
mod sqlite_harness;
mod type_mapping;
mod world;

/// Instantiates every scenario for one harness. `$start` is an expression
/// evaluating to a future of `Option<Arc<dyn Harness>>` (`None` when the
/// engine's server is unreachable outside CI: the test is skipped, loudly);
/// each test starts its own.
#[macro_export]
macro_rules! conformance_suite {
    ($start:expr) => {
        $crate::conformance_suite!($start, 16);
    };
    // `$cases`: randomized convergence cases per policy (`PROPTEST_CASES`
    // overrides); fewer where every case creates server databases.
    ($start:expr, $cases:expr) => {
        #[allow(unused_imports)]
        use $crate::scenarios::{
            bad_input, columns, commit_safety, commit_safety::OpenOn, concurrency, conflicts, conflicts::Op,
            conflicts::Rule, convergence, crash, crash::FailAt, crash::Script, directions, foreign_keys, initial_copy,
            names_values,
        };

        macro_rules! scenario {
            ($name:ident, |$h:ident| $body:expr) => {
                #[tokio::test]
                async fn $name() {
                    // `None`: the engine's server is unreachable and its harness said so.
                    let Some(harness) = $start.await else { return };
                    let $h: &dyn $crate::harness::Harness = &*harness;
                    $body.await;
                }
            };
        }

        // 1. Directions.
        scenario!(inserts_updates_and_deletes_flow_both_ways_for_a_bidirectional_member, |h| {
            directions::bidirectional_member_sends_and_receives(h)
        });
        scenario!(a_one_way_member_to_hub_member_sends_but_never_receives, |h| {
            directions::one_way_member_to_hub_sends_but_never_receives(h)
        });
        scenario!(a_one_way_hub_to_member_member_receives_but_never_sends, |h| {
            directions::one_way_hub_to_member_receives_but_never_sends(h)
        });

        // 4. No ping-pong.
        scenario!(a_converged_group_moves_no_rows_even_after_provisioning_again, |h| {
            directions::a_converged_group_moves_no_rows(h)
        });

        // After an initial copy.
        scenario!(rows_deleted_on_the_hub_are_not_brought_back_by_members_that_only_received_them_under_hub_win, |h| {
            initial_copy::rows_deleted_on_the_hub_are_not_brought_back_by_members_that_only_received_them(
                h,
                hubsync_core::ConflictPolicy::HubWin,
            )
        });
        scenario!(
            rows_deleted_on_the_hub_are_not_brought_back_by_members_that_only_received_them_under_member_win,
            |h| initial_copy::rows_deleted_on_the_hub_are_not_brought_back_by_members_that_only_received_them(
                h,
                hubsync_core::ConflictPolicy::MemberWin
            )
        );
        scenario!(an_initial_copy_refused_at_once_fails_promptly_and_the_next_sync_copies_everything, |h| {
            initial_copy::an_initial_copy_refused_at_once_fails_promptly_and_the_next_sync_copies_everything(h)
        });
        scenario!(an_application_write_racing_the_initial_copy_becomes_a_conflict, |h| {
            initial_copy::an_application_write_racing_the_initial_copy_becomes_a_conflict(h)
        });
        scenario!(provisioning_a_member_again_does_not_turn_copied_rows_into_member_changes_under_hub_win, |h| {
            initial_copy::provisioning_again_does_not_turn_copied_rows_into_member_changes(
                h,
                hubsync_core::ConflictPolicy::HubWin,
            )
        });
        scenario!(provisioning_a_member_again_does_not_turn_copied_rows_into_member_changes_under_member_win, |h| {
            initial_copy::provisioning_again_does_not_turn_copied_rows_into_member_changes(
                h,
                hubsync_core::ConflictPolicy::MemberWin,
            )
        });

        // 2. The conflict matrix.
        macro_rules! conflict {
            ($name:ident, $hub:ident, $member:ident, $rule:ident) => {
                scenario!($name, |h| conflicts::conflict_case(h, Op::$hub, Op::$member, Rule::$rule));
            };
        }
        conflict!(hub_insert_wins_over_member_insert_of_the_same_key_under_hub_win, Insert, Insert, HubWin);
        conflict!(member_insert_wins_over_hub_insert_of_the_same_key_under_member_win, Insert, Insert, MemberWin);
        conflict!(the_later_insert_wins_when_the_hub_inserts_last_under_last_writer_wins, Insert, Insert, LwwHubLast);
        conflict!(
            the_later_insert_wins_when_the_member_inserts_last_under_last_writer_wins,
            Insert,
            Insert,
            LwwMemberLast
        );
        conflict!(hub_insert_wins_over_member_update_of_its_own_row_under_hub_win, Insert, Update, HubWin);
        conflict!(member_update_wins_over_hub_insert_under_member_win, Insert, Update, MemberWin);
        conflict!(
            hub_insert_wins_over_member_update_when_the_hub_writes_last_under_last_writer_wins,
            Insert,
            Update,
            LwwHubLast
        );
        conflict!(
            member_update_wins_over_hub_insert_when_the_member_writes_last_under_last_writer_wins,
            Insert,
            Update,
            LwwMemberLast
        );
        conflict!(hub_insert_wins_over_member_delete_of_its_own_row_under_hub_win, Insert, Delete, HubWin);
        conflict!(member_delete_wins_over_hub_insert_under_member_win, Insert, Delete, MemberWin);
        conflict!(
            hub_insert_wins_over_member_delete_when_the_hub_writes_last_under_last_writer_wins,
            Insert,
            Delete,
            LwwHubLast
        );
        conflict!(
            member_delete_wins_over_hub_insert_when_the_member_writes_last_under_last_writer_wins,
            Insert,
            Delete,
            LwwMemberLast
        );
        conflict!(hub_update_of_its_own_row_wins_over_member_insert_under_hub_win, Update, Insert, HubWin);
        conflict!(member_insert_wins_over_hub_update_under_member_win, Update, Insert, MemberWin);
        conflict!(
            hub_update_wins_over_member_insert_when_the_hub_writes_last_under_last_writer_wins,
            Update,
            Insert,
            LwwHubLast
        );
        conflict!(
            member_insert_wins_over_hub_update_when_the_member_writes_last_under_last_writer_wins,
            Update,
            Insert,
            LwwMemberLast
        );
        conflict!(update_on_hub_wins_over_member_update_under_hub_win, Update, Update, HubWin);
        conflict!(member_update_wins_over_hub_update_under_member_win, Update, Update, MemberWin);
        conflict!(the_later_update_wins_when_the_hub_updates_last_under_last_writer_wins, Update, Update, LwwHubLast);
        conflict!(
            the_later_update_wins_when_the_member_updates_last_under_last_writer_wins,
            Update,
            Update,
            LwwMemberLast
        );
        conflict!(update_on_hub_wins_over_member_delete_under_hub_win, Update, Delete, HubWin);
        conflict!(member_delete_wins_over_hub_update_under_member_win, Update, Delete, MemberWin);
        conflict!(
            hub_update_wins_over_member_delete_when_the_hub_writes_last_under_last_writer_wins,
            Update,
            Delete,
            LwwHubLast
        );
        conflict!(
            member_delete_wins_over_hub_update_when_the_member_writes_last_under_last_writer_wins,
            Update,
            Delete,
            LwwMemberLast
        );
        conflict!(hub_delete_of_its_own_row_wins_over_member_insert_under_hub_win, Delete, Insert, HubWin);
        conflict!(member_insert_wins_over_hub_delete_under_member_win, Delete, Insert, MemberWin);
        conflict!(
            hub_delete_wins_over_member_insert_when_the_hub_writes_last_under_last_writer_wins,
            Delete,
            Insert,
            LwwHubLast
        );
        conflict!(
            member_insert_wins_over_hub_delete_when_the_member_writes_last_under_last_writer_wins,
            Delete,
            Insert,
            LwwMemberLast
        );
        conflict!(delete_on_hub_wins_over_member_update_under_hub_win, Delete, Update, HubWin);
        conflict!(member_update_wins_over_hub_delete_under_member_win, Delete, Update, MemberWin);
        conflict!(
            hub_delete_wins_over_member_update_when_the_hub_writes_last_under_last_writer_wins,
            Delete,
            Update,
            LwwHubLast
        );
        conflict!(
            member_update_wins_over_hub_delete_when_the_member_writes_last_under_last_writer_wins,
            Delete,
            Update,
            LwwMemberLast
        );
        conflict!(a_delete_on_both_sides_is_no_conflict_and_stays_deleted_under_hub_win, Delete, Delete, HubWin);
        conflict!(a_delete_on_both_sides_is_no_conflict_and_stays_deleted_under_member_win, Delete, Delete, MemberWin);
        conflict!(
            a_delete_on_both_sides_stays_deleted_when_the_hub_deletes_last_under_last_writer_wins,
            Delete,
            Delete,
            LwwHubLast
        );
        conflict!(
            a_delete_on_both_sides_stays_deleted_when_the_member_deletes_last_under_last_writer_wins,
            Delete,
            Delete,
            LwwMemberLast
        );
        scenario!(last_writer_wins_compares_write_times_even_when_the_earlier_writer_syncs_first, |h| {
            conflicts::last_writer_wins_by_write_time_across_members(h)
        });

        // 3. Commit safety.
        scenario!(a_hub_write_still_uncommitted_while_a_sync_reads_arrives_at_the_next_sync, |h| {
            commit_safety::open_write_arrives_at_the_next_sync(h, OpenOn::Hub)
        });
        scenario!(a_member_write_still_uncommitted_while_a_sync_reads_arrives_at_the_next_sync, |h| {
            commit_safety::open_write_arrives_at_the_next_sync(h, OpenOn::Member)
        });

        // 5. Crash safety.
        scenario!(an_incremental_sync_interrupted_while_uploading_resumes_without_loss_or_duplicates, |h| {
            crash::interrupted_sync_resumes_exactly(h, Script::Incremental, FailAt::Upload)
        });
        scenario!(an_incremental_sync_interrupted_while_downloading_resumes_without_loss_or_duplicates, |h| {
            crash::interrupted_sync_resumes_exactly(h, Script::Incremental, FailAt::Download)
        });
        scenario!(a_first_sync_interrupted_while_uploading_resumes_without_loss_or_duplicates, |h| {
            crash::interrupted_sync_resumes_exactly(h, Script::Initial, FailAt::Upload)
        });
        scenario!(a_first_sync_interrupted_during_the_initial_copy_resumes_without_loss_or_duplicates, |h| {
            crash::interrupted_sync_resumes_exactly(h, Script::Initial, FailAt::Download)
        });

        // Applications writing during syncs.
        scenario!(concurrent_writers_on_every_database_during_syncs_converge_under_hub_win, |h| {
            concurrency::concurrent_writers_during_syncs_converge(h, hubsync_core::ConflictPolicy::HubWin)
        });
        scenario!(concurrent_writers_on_every_database_during_syncs_converge_under_last_writer_wins, |h| {
            concurrency::concurrent_writers_during_syncs_converge(h, hubsync_core::ConflictPolicy::LastWriterWins)
        });

        scenario!(a_large_transaction_cut_into_batches_resumes_exactly_when_uploading, |h| {
            crash::a_large_transaction_cut_into_batches_resumes_exactly(h, FailAt::Upload)
        });
        scenario!(a_large_transaction_cut_into_batches_resumes_exactly_when_downloading, |h| {
            crash::a_large_transaction_cut_into_batches_resumes_exactly(h, FailAt::Download)
        });

        // 6. Randomized convergence (plain tests: each case runs its own runtime).
        #[test]
        fn random_scripts_converge_to_the_hub_and_the_hub_wins_the_final_conflict_under_hub_win() {
            convergence::random_scripts_converge(|| $start, hubsync_core::ConflictPolicy::HubWin, $cases);
        }
        #[test]
        fn random_scripts_converge_to_the_hub_and_the_member_wins_the_final_conflict_under_member_win() {
            convergence::random_scripts_converge(|| $start, hubsync_core::ConflictPolicy::MemberWin, $cases);
        }
        #[test]
        fn random_scripts_converge_to_the_hub_and_the_later_writer_wins_the_final_conflict_under_last_writer_wins() {
            convergence::random_scripts_converge(|| $start, hubsync_core::ConflictPolicy::LastWriterWins, $cases);
        }

        // 7. Foreign keys.
        scenario!(parents_and_children_inserted_on_the_hub_reach_an_empty_and_a_non_empty_member, |h| {
            foreign_keys::parents_and_children_reach_empty_and_non_empty_members(h)
        });
        scenario!(children_and_then_their_parent_deleted_on_the_hub_are_deleted_on_members, |h| {
            foreign_keys::deleting_children_and_their_parent_syncs(h)
        });
        scenario!(a_child_moved_to_a_new_parent_before_its_old_parent_is_deleted_syncs, |h| {
            foreign_keys::reparenting_a_child_and_deleting_its_old_parent_syncs(h)
        });
        scenario!(a_self_referencing_tree_of_depth_three_syncs_incrementally, |h| {
            foreign_keys::a_self_referencing_tree_syncs_incrementally(h)
        });
        scenario!(a_self_referencing_tree_syncs_when_a_parent_changes_after_its_child_in_one_batch, |h| {
            foreign_keys::a_self_referencing_tree_syncs_when_a_parent_changes_after_its_child(h, 3)
        });
        scenario!(a_self_referencing_tree_syncs_when_a_parent_changes_after_its_child_across_batches, |h| {
            foreign_keys::a_self_referencing_tree_syncs_when_a_parent_changes_after_its_child(h, 1)
        });
        scenario!(rows_a_cascade_deletes_while_a_change_is_applied_reach_every_member, |h| {
            foreign_keys::rows_a_cascade_deletes_during_an_apply_reach_every_member(h)
        });

        // 8. Names and values.
        scenario!(awkward_table_and_column_names_and_exact_values_sync_both_ways, |h| {
            names_values::awkward_names_and_exact_values_sync_both_ways(h)
        });

        // 9. Column selection.
        scenario!(an_auto_provisioned_member_gets_only_the_selected_columns_and_their_indexes, |h| {
            columns::an_auto_provisioned_member_gets_only_the_selected_columns_and_their_indexes(h)
        });
        scenario!(a_member_only_column_is_never_touched_nor_sent, |h| {
            columns::a_member_only_column_is_never_touched_nor_sent(h)
        });
        scenario!(equal_rows_on_both_sides_are_left_alone_at_the_first_sync, |h| {
            columns::equal_rows_on_both_sides_are_left_alone_at_the_first_sync(h)
        });

        // 10. Bad input.
        scenario!(an_unopenable_member_fails_clearly_and_the_other_members_still_sync, |h| {
            bad_input::an_unopenable_member_fails_clearly_and_the_others_still_sync(h)
        });
        scenario!(a_table_missing_on_the_hub_is_named_in_the_error, |h| {
            bad_input::a_table_missing_on_the_hub_is_named_in_the_error(h)
        });
        scenario!(a_member_table_lacking_a_synced_column_is_refused_and_nothing_changes, |h| {
            bad_input::a_member_table_lacking_a_synced_column_is_refused_clearly(h)
        });
        scenario!(a_table_without_primary_key_is_refused_and_nothing_changes, |h| {
            bad_input::a_table_without_primary_key_is_refused_clearly(h)
        });
    };
}

/// The suite on SQLite: hub and members all SQLite files.
mod sqlite {
    crate::conformance_suite!(crate::sqlite_harness::SqliteHarness::start());
}

/// Typed values across every ordered pair of engines (see `type_mapping`).
mod types {
    use crate::type_mapping::{Starting, values_round_trip};

    fn sqlite() -> Starting {
        Box::pin(crate::sqlite_harness::SqliteHarness::start())
    }

    fn mysql() -> Starting {
        Box::pin(crate::mysql_harness::MySqlHarness::start())
    }

    fn postgres() -> Starting {
        Box::pin(crate::postgres_harness::PgHarness::start())
    }

    #[test]
    fn typed_values_round_trip_sqlite_to_sqlite() {
        values_round_trip(sqlite, sqlite);
    }

    #[test]
    fn typed_values_round_trip_sqlite_to_mysql() {
        values_round_trip(sqlite, mysql);
    }

    #[test]
    fn typed_values_round_trip_mysql_to_sqlite() {
        values_round_trip(mysql, sqlite);
    }

    #[test]
    fn typed_values_round_trip_mysql_to_mysql() {
        values_round_trip(mysql, mysql);
    }

    #[test]
    fn typed_values_round_trip_postgres_to_postgres() {
        values_round_trip(postgres, postgres);
    }

    #[test]
    fn typed_values_round_trip_postgres_to_sqlite() {
        values_round_trip(postgres, sqlite);
    }

    #[test]
    fn typed_values_round_trip_sqlite_to_postgres() {
        values_round_trip(sqlite, postgres);
    }

    #[test]
    fn typed_values_round_trip_postgres_to_mysql() {
        values_round_trip(postgres, mysql);
    }

    #[test]
    fn typed_values_round_trip_mysql_to_postgres() {
        values_round_trip(mysql, postgres);
    }
}

/// The suite on MariaDB: hub and members all MariaDB databases.
mod mysql {
    crate::conformance_suite!(crate::mysql_harness::MySqlHarness::start(), 8);
}

/// The suite on PostgreSQL: hub and members all PostgreSQL databases.
mod postgres {
    crate::conformance_suite!(crate::postgres_harness::PgHarness::start(), 8);
}

/// Mixed groups: the hub on one engine, members on others.
mod mixed {
    use std::sync::Arc;

    use crate::harness::Harness;
    use crate::mixed_harness::MixedHarness;
    use crate::mysql_harness::MySqlHarness;
    use crate::postgres_harness::PgHarness;
    use crate::sqlite_harness::SqliteHarness;

    /// A PostgreSQL hub; members alternate MariaDB, SQLite.
    pub(crate) async fn postgres_hub_mariadb_and_sqlite_members() -> Option<Arc<dyn Harness>> {
        MixedHarness::start(PgHarness::start().await, vec![MySqlHarness::start().await, SqliteHarness::start().await])
    }

    /// A MariaDB hub with PostgreSQL members.
    pub(crate) async fn mariadb_hub_postgres_members() -> Option<Arc<dyn Harness>> {
        MixedHarness::start(MySqlHarness::start().await, vec![PgHarness::start().await])
    }

    /// A SQLite hub with PostgreSQL members.
    pub(crate) async fn sqlite_hub_postgres_members() -> Option<Arc<dyn Harness>> {
        MixedHarness::start(SqliteHarness::start().await, vec![PgHarness::start().await])
    }

    mod postgres_hub_mariadb_and_sqlite_members {
        crate::conformance_suite!(super::postgres_hub_mariadb_and_sqlite_members(), 4);
    }

    mod mariadb_hub_postgres_member {
        crate::conformance_suite!(super::mariadb_hub_postgres_members(), 4);
    }

    mod sqlite_hub_postgres_member {
        crate::conformance_suite!(super::sqlite_hub_postgres_members(), 4);
    }
}
