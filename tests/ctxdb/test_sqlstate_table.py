"""Every SQLSTATE PostgreSQL 15 defines, through both drivers' error types: what ctxdb does.

The rule under test (``ctxdb._classify``): a SQLSTATE decides alone. Class 08,
57P01/57P02/57P03 and 25006 mean the host is lost; every other code is the
application's error and is passed through untouched, whatever its message,
DETAIL or HINT say. Where a lost host strikes decides what the caller sees:

* ``connect`` (opening or checking out a connection) and ``in a transaction``
  (a statement inside an explicit transaction whose COMMIT was never sent):
  nothing can have been stored, ``RETRY`` (RetryableConnectionError);
* ``at COMMIT or in autocommit``: it may have been stored, ``UNKNOWN``
  (CommitOutcomeUnknownError), except 25006, a refusal: ``RETRY``;
* ``pre-ping``: ``LOST`` (reported, pool invalidated, SQLAlchemy reconnects).

``TABLE`` was generated from ``tests/data/pg15_errcodes.txt`` (PostgreSQL 15's
``src/backend/utils/errcodes.txt``, vendored unchanged) by reading each code
and writing the outcome the rule gives; ``test_the_table_lists_every_code``
keeps the two in step. Each code is built as its driver builds it from the
server's fields (``tests/support/driver_errors.py``: asyncpg's
``PostgresError.new``; psycopg's class for the code, with the diagnostic
fields), then seen as SQLAlchemy's dialect hands it to ``handle_error`` and
as SQLAlchemy raises it; each is given a message, DETAIL and HINT holding
every phrase of the word lists, and parameters holding them too. Pure input: the hostile values on a
real server are in ``test_user_data_errors.py``.
"""

from __future__ import annotations

import ssl
from collections import Counter
from collections.abc import Callable

import asyncpg
import psycopg
import pytest

from ctxdb._classify import (
    CLOSED_WORDS,
    NETWORK_WORDS,
    PERMANENT_WORDS,
    Outcome,
    Phase,
    commits,
    outcome,
)
from tests.support.driver_errors import forms, read_errcodes

RETRY = Outcome.RETRY_SAFE
UNKNOWN = Outcome.OUTCOME_UNKNOWN
LOST = Outcome.HOST_LOST
PASS = Outcome.UNTOUCHED
PHASES = (Phase.CONNECT, Phase.IN_TRANSACTION, Phase.MAY_COMMIT, Phase.PRE_PING)
Row = tuple[str, str, Outcome, Outcome, Outcome, Outcome]

# Every phrase any word list holds, and the words of the codes that mean a lost host.
PHRASES = (
    *CLOSED_WORDS,
    *NETWORK_WORDS,
    *PERMANENT_WORDS,
    "read-only transaction",
    "cannot execute INSERT in a read-only transaction",
    "terminating connection due to administrator command",
    "server closed the connection unexpectedly",
    "consuming input failed",
)
HOSTILE = " | ".join(PHRASES)


# Generated from tests/data/pg15_errcodes.txt (see the module's docstring).
TABLE: tuple[Row, ...] = (
    # code, condition name; outcome at: connect, in a transaction, COMMIT/autocommit, pre-ping
    # Class 00: Successful Completion
    ("00000", "successful_completion", PASS, PASS, PASS, PASS),
    # Class 01: Warning
    ("01000", "warning", PASS, PASS, PASS, PASS),
    ("0100C", "dynamic_result_sets_returned", PASS, PASS, PASS, PASS),
    ("01008", "implicit_zero_bit_padding", PASS, PASS, PASS, PASS),
    ("01003", "null_value_eliminated_in_set_function", PASS, PASS, PASS, PASS),
    ("01007", "privilege_not_granted", PASS, PASS, PASS, PASS),
    ("01006", "privilege_not_revoked", PASS, PASS, PASS, PASS),
    ("01004", "string_data_right_truncation", PASS, PASS, PASS, PASS),
    ("01P01", "deprecated_feature", PASS, PASS, PASS, PASS),
    # Class 02: No Data (this is also a warning class per the SQL standard)
    ("02000", "no_data", PASS, PASS, PASS, PASS),
    ("02001", "no_additional_dynamic_result_sets_returned", PASS, PASS, PASS, PASS),
    # Class 03: SQL Statement Not Yet Complete
    ("03000", "sql_statement_not_yet_complete", PASS, PASS, PASS, PASS),
    # Class 08: Connection Exception
    ("08000", "connection_exception", RETRY, RETRY, UNKNOWN, LOST),
    ("08003", "connection_does_not_exist", RETRY, RETRY, UNKNOWN, LOST),
    ("08006", "connection_failure", RETRY, RETRY, UNKNOWN, LOST),
    ("08001", "sqlclient_unable_to_establish_sqlconnection", RETRY, RETRY, UNKNOWN, LOST),
    ("08004", "sqlserver_rejected_establishment_of_sqlconnection", RETRY, RETRY, UNKNOWN, LOST),
    ("08007", "transaction_resolution_unknown", RETRY, RETRY, UNKNOWN, LOST),
    ("08P01", "protocol_violation", RETRY, RETRY, UNKNOWN, LOST),
    # Class 09: Triggered Action Exception
    ("09000", "triggered_action_exception", PASS, PASS, PASS, PASS),
    # Class 0A: Feature Not Supported
    ("0A000", "feature_not_supported", PASS, PASS, PASS, PASS),
    # Class 0B: Invalid Transaction Initiation
    ("0B000", "invalid_transaction_initiation", PASS, PASS, PASS, PASS),
    # Class 0F: Locator Exception
    ("0F000", "locator_exception", PASS, PASS, PASS, PASS),
    ("0F001", "invalid_locator_specification", PASS, PASS, PASS, PASS),
    # Class 0L: Invalid Grantor
    ("0L000", "invalid_grantor", PASS, PASS, PASS, PASS),
    ("0LP01", "invalid_grant_operation", PASS, PASS, PASS, PASS),
    # Class 0P: Invalid Role Specification
    ("0P000", "invalid_role_specification", PASS, PASS, PASS, PASS),
    # Class 0Z: Diagnostics Exception
    ("0Z000", "diagnostics_exception", PASS, PASS, PASS, PASS),
    ("0Z002", "stacked_diagnostics_accessed_without_active_handler", PASS, PASS, PASS, PASS),
    # Class 20: Case Not Found
    ("20000", "case_not_found", PASS, PASS, PASS, PASS),
    # Class 21: Cardinality Violation
    ("21000", "cardinality_violation", PASS, PASS, PASS, PASS),
    # Class 22: Data Exception
    ("22000", "data_exception", PASS, PASS, PASS, PASS),
    ("2202E", "array_element_error", PASS, PASS, PASS, PASS),
    ("22021", "character_not_in_repertoire", PASS, PASS, PASS, PASS),
    ("22008", "datetime_field_overflow", PASS, PASS, PASS, PASS),
    ("22012", "division_by_zero", PASS, PASS, PASS, PASS),
    ("22005", "error_in_assignment", PASS, PASS, PASS, PASS),
    ("2200B", "escape_character_conflict", PASS, PASS, PASS, PASS),
    ("22022", "indicator_overflow", PASS, PASS, PASS, PASS),
    ("22015", "interval_field_overflow", PASS, PASS, PASS, PASS),
    ("2201E", "invalid_argument_for_logarithm", PASS, PASS, PASS, PASS),
    ("22014", "invalid_argument_for_ntile_function", PASS, PASS, PASS, PASS),
    ("22016", "invalid_argument_for_nth_value_function", PASS, PASS, PASS, PASS),
    ("2201F", "invalid_argument_for_power_function", PASS, PASS, PASS, PASS),
    ("2201G", "invalid_argument_for_width_bucket_function", PASS, PASS, PASS, PASS),
    ("22018", "invalid_character_value_for_cast", PASS, PASS, PASS, PASS),
    ("22007", "invalid_datetime_format", PASS, PASS, PASS, PASS),
    ("22019", "invalid_escape_character", PASS, PASS, PASS, PASS),
    ("2200D", "invalid_escape_octet", PASS, PASS, PASS, PASS),
    ("22025", "invalid_escape_sequence", PASS, PASS, PASS, PASS),
    ("22P06", "nonstandard_use_of_escape_character", PASS, PASS, PASS, PASS),
    ("22010", "invalid_indicator_parameter_value", PASS, PASS, PASS, PASS),
    ("22023", "invalid_parameter_value", PASS, PASS, PASS, PASS),
    ("22013", "invalid_preceding_or_following_size", PASS, PASS, PASS, PASS),
    ("2201B", "invalid_regular_expression", PASS, PASS, PASS, PASS),
    ("2201W", "invalid_row_count_in_limit_clause", PASS, PASS, PASS, PASS),
    ("2201X", "invalid_row_count_in_result_offset_clause", PASS, PASS, PASS, PASS),
    ("2202H", "invalid_tablesample_argument", PASS, PASS, PASS, PASS),
    ("2202G", "invalid_tablesample_repeat", PASS, PASS, PASS, PASS),
    ("22009", "invalid_time_zone_displacement_value", PASS, PASS, PASS, PASS),
    ("2200C", "invalid_use_of_escape_character", PASS, PASS, PASS, PASS),
    ("2200G", "most_specific_type_mismatch", PASS, PASS, PASS, PASS),
    ("22004", "null_value_not_allowed", PASS, PASS, PASS, PASS),
    ("22002", "null_value_no_indicator_parameter", PASS, PASS, PASS, PASS),
    ("22003", "numeric_value_out_of_range", PASS, PASS, PASS, PASS),
    ("2200H", "sequence_generator_limit_exceeded", PASS, PASS, PASS, PASS),
    ("22026", "string_data_length_mismatch", PASS, PASS, PASS, PASS),
    ("22001", "string_data_right_truncation", PASS, PASS, PASS, PASS),
    ("22011", "substring_error", PASS, PASS, PASS, PASS),
    ("22027", "trim_error", PASS, PASS, PASS, PASS),
    ("22024", "unterminated_c_string", PASS, PASS, PASS, PASS),
    ("2200F", "zero_length_character_string", PASS, PASS, PASS, PASS),
    ("22P01", "floating_point_exception", PASS, PASS, PASS, PASS),
    ("22P02", "invalid_text_representation", PASS, PASS, PASS, PASS),
    ("22P03", "invalid_binary_representation", PASS, PASS, PASS, PASS),
    ("22P04", "bad_copy_file_format", PASS, PASS, PASS, PASS),
    ("22P05", "untranslatable_character", PASS, PASS, PASS, PASS),
    ("2200L", "not_an_xml_document", PASS, PASS, PASS, PASS),
    ("2200M", "invalid_xml_document", PASS, PASS, PASS, PASS),
    ("2200N", "invalid_xml_content", PASS, PASS, PASS, PASS),
    ("2200S", "invalid_xml_comment", PASS, PASS, PASS, PASS),
    ("2200T", "invalid_xml_processing_instruction", PASS, PASS, PASS, PASS),
    ("22030", "duplicate_json_object_key_value", PASS, PASS, PASS, PASS),
    ("22031", "invalid_argument_for_sql_json_datetime_function", PASS, PASS, PASS, PASS),
    ("22032", "invalid_json_text", PASS, PASS, PASS, PASS),
    ("22033", "invalid_sql_json_subscript", PASS, PASS, PASS, PASS),
    ("22034", "more_than_one_sql_json_item", PASS, PASS, PASS, PASS),
    ("22035", "no_sql_json_item", PASS, PASS, PASS, PASS),
    ("22036", "non_numeric_sql_json_item", PASS, PASS, PASS, PASS),
    ("22037", "non_unique_keys_in_a_json_object", PASS, PASS, PASS, PASS),
    ("22038", "singleton_sql_json_item_required", PASS, PASS, PASS, PASS),
    ("22039", "sql_json_array_not_found", PASS, PASS, PASS, PASS),
    ("2203A", "sql_json_member_not_found", PASS, PASS, PASS, PASS),
    ("2203B", "sql_json_number_not_found", PASS, PASS, PASS, PASS),
    ("2203C", "sql_json_object_not_found", PASS, PASS, PASS, PASS),
    ("2203D", "too_many_json_array_elements", PASS, PASS, PASS, PASS),
    ("2203E", "too_many_json_object_members", PASS, PASS, PASS, PASS),
    ("2203F", "sql_json_scalar_required", PASS, PASS, PASS, PASS),
    ("2203G", "sql_json_item_cannot_be_cast_to_target_type", PASS, PASS, PASS, PASS),
    # Class 23: Integrity Constraint Violation
    ("23000", "integrity_constraint_violation", PASS, PASS, PASS, PASS),
    ("23001", "restrict_violation", PASS, PASS, PASS, PASS),
    ("23502", "not_null_violation", PASS, PASS, PASS, PASS),
    ("23503", "foreign_key_violation", PASS, PASS, PASS, PASS),
    ("23505", "unique_violation", PASS, PASS, PASS, PASS),
    ("23514", "check_violation", PASS, PASS, PASS, PASS),
    ("23P01", "exclusion_violation", PASS, PASS, PASS, PASS),
    # Class 24: Invalid Cursor State
    ("24000", "invalid_cursor_state", PASS, PASS, PASS, PASS),
    # Class 25: Invalid Transaction State
    ("25000", "invalid_transaction_state", PASS, PASS, PASS, PASS),
    ("25001", "active_sql_transaction", PASS, PASS, PASS, PASS),
    ("25002", "branch_transaction_already_active", PASS, PASS, PASS, PASS),
    ("25008", "held_cursor_requires_same_isolation_level", PASS, PASS, PASS, PASS),
    ("25003", "inappropriate_access_mode_for_branch_transaction", PASS, PASS, PASS, PASS),
    ("25004", "inappropriate_isolation_level_for_branch_transaction", PASS, PASS, PASS, PASS),
    ("25005", "no_active_sql_transaction_for_branch_transaction", PASS, PASS, PASS, PASS),
    ("25006", "read_only_sql_transaction", RETRY, RETRY, RETRY, LOST),
    ("25007", "schema_and_data_statement_mixing_not_supported", PASS, PASS, PASS, PASS),
    ("25P01", "no_active_sql_transaction", PASS, PASS, PASS, PASS),
    ("25P02", "in_failed_sql_transaction", PASS, PASS, PASS, PASS),
    ("25P03", "idle_in_transaction_session_timeout", PASS, PASS, PASS, PASS),
    # Class 26: Invalid SQL Statement Name
    ("26000", "invalid_sql_statement_name", PASS, PASS, PASS, PASS),
    # Class 27: Triggered Data Change Violation
    ("27000", "triggered_data_change_violation", PASS, PASS, PASS, PASS),
    # Class 28: Invalid Authorization Specification
    ("28000", "invalid_authorization_specification", PASS, PASS, PASS, PASS),
    ("28P01", "invalid_password", PASS, PASS, PASS, PASS),
    # Class 2B: Dependent Privilege Descriptors Still Exist
    ("2B000", "dependent_privilege_descriptors_still_exist", PASS, PASS, PASS, PASS),
    ("2BP01", "dependent_objects_still_exist", PASS, PASS, PASS, PASS),
    # Class 2D: Invalid Transaction Termination
    ("2D000", "invalid_transaction_termination", PASS, PASS, PASS, PASS),
    # Class 2F: SQL Routine Exception
    ("2F000", "sql_routine_exception", PASS, PASS, PASS, PASS),
    ("2F005", "function_executed_no_return_statement", PASS, PASS, PASS, PASS),
    ("2F002", "modifying_sql_data_not_permitted", PASS, PASS, PASS, PASS),
    ("2F003", "prohibited_sql_statement_attempted", PASS, PASS, PASS, PASS),
    ("2F004", "reading_sql_data_not_permitted", PASS, PASS, PASS, PASS),
    # Class 34: Invalid Cursor Name
    ("34000", "invalid_cursor_name", PASS, PASS, PASS, PASS),
    # Class 38: External Routine Exception
    ("38000", "external_routine_exception", PASS, PASS, PASS, PASS),
    ("38001", "containing_sql_not_permitted", PASS, PASS, PASS, PASS),
    ("38002", "modifying_sql_data_not_permitted", PASS, PASS, PASS, PASS),
    ("38003", "prohibited_sql_statement_attempted", PASS, PASS, PASS, PASS),
    ("38004", "reading_sql_data_not_permitted", PASS, PASS, PASS, PASS),
    # Class 39: External Routine Invocation Exception
    ("39000", "external_routine_invocation_exception", PASS, PASS, PASS, PASS),
    ("39001", "invalid_sqlstate_returned", PASS, PASS, PASS, PASS),
    ("39004", "null_value_not_allowed", PASS, PASS, PASS, PASS),
    ("39P01", "trigger_protocol_violated", PASS, PASS, PASS, PASS),
    ("39P02", "srf_protocol_violated", PASS, PASS, PASS, PASS),
    ("39P03", "event_trigger_protocol_violated", PASS, PASS, PASS, PASS),
    # Class 3B: Savepoint Exception
    ("3B000", "savepoint_exception", PASS, PASS, PASS, PASS),
    ("3B001", "invalid_savepoint_specification", PASS, PASS, PASS, PASS),
    # Class 3D: Invalid Catalog Name
    ("3D000", "invalid_catalog_name", PASS, PASS, PASS, PASS),
    # Class 3F: Invalid Schema Name
    ("3F000", "invalid_schema_name", PASS, PASS, PASS, PASS),
    # Class 40: Transaction Rollback
    ("40000", "transaction_rollback", PASS, PASS, PASS, PASS),
    ("40002", "transaction_integrity_constraint_violation", PASS, PASS, PASS, PASS),
    ("40001", "serialization_failure", PASS, PASS, PASS, PASS),
    ("40003", "statement_completion_unknown", PASS, PASS, PASS, PASS),
    ("40P01", "deadlock_detected", PASS, PASS, PASS, PASS),
    # Class 42: Syntax Error or Access Rule Violation
    ("42000", "syntax_error_or_access_rule_violation", PASS, PASS, PASS, PASS),
    ("42601", "syntax_error", PASS, PASS, PASS, PASS),
    ("42501", "insufficient_privilege", PASS, PASS, PASS, PASS),
    ("42846", "cannot_coerce", PASS, PASS, PASS, PASS),
    ("42803", "grouping_error", PASS, PASS, PASS, PASS),
    ("42P20", "windowing_error", PASS, PASS, PASS, PASS),
    ("42P19", "invalid_recursion", PASS, PASS, PASS, PASS),
    ("42830", "invalid_foreign_key", PASS, PASS, PASS, PASS),
    ("42602", "invalid_name", PASS, PASS, PASS, PASS),
    ("42622", "name_too_long", PASS, PASS, PASS, PASS),
    ("42939", "reserved_name", PASS, PASS, PASS, PASS),
    ("42804", "datatype_mismatch", PASS, PASS, PASS, PASS),
    ("42P18", "indeterminate_datatype", PASS, PASS, PASS, PASS),
    ("42P21", "collation_mismatch", PASS, PASS, PASS, PASS),
    ("42P22", "indeterminate_collation", PASS, PASS, PASS, PASS),
    ("42809", "wrong_object_type", PASS, PASS, PASS, PASS),
    ("428C9", "generated_always", PASS, PASS, PASS, PASS),
    ("42703", "undefined_column", PASS, PASS, PASS, PASS),
    ("42883", "undefined_function", PASS, PASS, PASS, PASS),
    ("42P01", "undefined_table", PASS, PASS, PASS, PASS),
    ("42P02", "undefined_parameter", PASS, PASS, PASS, PASS),
    ("42704", "undefined_object", PASS, PASS, PASS, PASS),
    ("42701", "duplicate_column", PASS, PASS, PASS, PASS),
    ("42P03", "duplicate_cursor", PASS, PASS, PASS, PASS),
    ("42P04", "duplicate_database", PASS, PASS, PASS, PASS),
    ("42723", "duplicate_function", PASS, PASS, PASS, PASS),
    ("42P05", "duplicate_prepared_statement", PASS, PASS, PASS, PASS),
    ("42P06", "duplicate_schema", PASS, PASS, PASS, PASS),
    ("42P07", "duplicate_table", PASS, PASS, PASS, PASS),
    ("42712", "duplicate_alias", PASS, PASS, PASS, PASS),
    ("42710", "duplicate_object", PASS, PASS, PASS, PASS),
    ("42702", "ambiguous_column", PASS, PASS, PASS, PASS),
    ("42725", "ambiguous_function", PASS, PASS, PASS, PASS),
    ("42P08", "ambiguous_parameter", PASS, PASS, PASS, PASS),
    ("42P09", "ambiguous_alias", PASS, PASS, PASS, PASS),
    ("42P10", "invalid_column_reference", PASS, PASS, PASS, PASS),
    ("42611", "invalid_column_definition", PASS, PASS, PASS, PASS),
    ("42P11", "invalid_cursor_definition", PASS, PASS, PASS, PASS),
    ("42P12", "invalid_database_definition", PASS, PASS, PASS, PASS),
    ("42P13", "invalid_function_definition", PASS, PASS, PASS, PASS),
    ("42P14", "invalid_prepared_statement_definition", PASS, PASS, PASS, PASS),
    ("42P15", "invalid_schema_definition", PASS, PASS, PASS, PASS),
    ("42P16", "invalid_table_definition", PASS, PASS, PASS, PASS),
    ("42P17", "invalid_object_definition", PASS, PASS, PASS, PASS),
    # Class 44: WITH CHECK OPTION Violation
    ("44000", "with_check_option_violation", PASS, PASS, PASS, PASS),
    # Class 53: Insufficient Resources
    ("53000", "insufficient_resources", PASS, PASS, PASS, PASS),
    ("53100", "disk_full", PASS, PASS, PASS, PASS),
    ("53200", "out_of_memory", PASS, PASS, PASS, PASS),
    ("53300", "too_many_connections", PASS, PASS, PASS, PASS),
    ("53400", "configuration_limit_exceeded", PASS, PASS, PASS, PASS),
    # Class 54: Program Limit Exceeded
    ("54000", "program_limit_exceeded", PASS, PASS, PASS, PASS),
    ("54001", "statement_too_complex", PASS, PASS, PASS, PASS),
    ("54011", "too_many_columns", PASS, PASS, PASS, PASS),
    ("54023", "too_many_arguments", PASS, PASS, PASS, PASS),
    # Class 55: Object Not In Prerequisite State
    ("55000", "object_not_in_prerequisite_state", PASS, PASS, PASS, PASS),
    ("55006", "object_in_use", PASS, PASS, PASS, PASS),
    ("55P02", "cant_change_runtime_param", PASS, PASS, PASS, PASS),
    ("55P03", "lock_not_available", PASS, PASS, PASS, PASS),
    ("55P04", "unsafe_new_enum_value_usage", PASS, PASS, PASS, PASS),
    # Class 57: Operator Intervention
    ("57000", "operator_intervention", PASS, PASS, PASS, PASS),
    ("57014", "query_canceled", PASS, PASS, PASS, PASS),
    ("57P01", "admin_shutdown", RETRY, RETRY, UNKNOWN, LOST),
    ("57P02", "crash_shutdown", RETRY, RETRY, UNKNOWN, LOST),
    ("57P03", "cannot_connect_now", RETRY, RETRY, UNKNOWN, LOST),
    ("57P04", "database_dropped", PASS, PASS, PASS, PASS),
    ("57P05", "idle_session_timeout", PASS, PASS, PASS, PASS),
    # Class 58: System Error (errors external to PostgreSQL itself)
    ("58000", "system_error", PASS, PASS, PASS, PASS),
    ("58030", "io_error", PASS, PASS, PASS, PASS),
    ("58P01", "undefined_file", PASS, PASS, PASS, PASS),
    ("58P02", "duplicate_file", PASS, PASS, PASS, PASS),
    # Class 72: Snapshot Failure
    ("72000", "snapshot_too_old", PASS, PASS, PASS, PASS),
    # Class F0: Configuration File Error
    ("F0000", "config_file_error", PASS, PASS, PASS, PASS),
    ("F0001", "lock_file_exists", PASS, PASS, PASS, PASS),
    # Class HV: Foreign Data Wrapper Error (SQL/MED)
    ("HV000", "fdw_error", PASS, PASS, PASS, PASS),
    ("HV005", "fdw_column_name_not_found", PASS, PASS, PASS, PASS),
    ("HV002", "fdw_dynamic_parameter_value_needed", PASS, PASS, PASS, PASS),
    ("HV010", "fdw_function_sequence_error", PASS, PASS, PASS, PASS),
    ("HV021", "fdw_inconsistent_descriptor_information", PASS, PASS, PASS, PASS),
    ("HV024", "fdw_invalid_attribute_value", PASS, PASS, PASS, PASS),
    ("HV007", "fdw_invalid_column_name", PASS, PASS, PASS, PASS),
    ("HV008", "fdw_invalid_column_number", PASS, PASS, PASS, PASS),
    ("HV004", "fdw_invalid_data_type", PASS, PASS, PASS, PASS),
    ("HV006", "fdw_invalid_data_type_descriptors", PASS, PASS, PASS, PASS),
    ("HV091", "fdw_invalid_descriptor_field_identifier", PASS, PASS, PASS, PASS),
    ("HV00B", "fdw_invalid_handle", PASS, PASS, PASS, PASS),
    ("HV00C", "fdw_invalid_option_index", PASS, PASS, PASS, PASS),
    ("HV00D", "fdw_invalid_option_name", PASS, PASS, PASS, PASS),
    ("HV090", "fdw_invalid_string_length_or_buffer_length", PASS, PASS, PASS, PASS),
    ("HV00A", "fdw_invalid_string_format", PASS, PASS, PASS, PASS),
    ("HV009", "fdw_invalid_use_of_null_pointer", PASS, PASS, PASS, PASS),
    ("HV014", "fdw_too_many_handles", PASS, PASS, PASS, PASS),
    ("HV001", "fdw_out_of_memory", PASS, PASS, PASS, PASS),
    ("HV00P", "fdw_no_schemas", PASS, PASS, PASS, PASS),
    ("HV00J", "fdw_option_name_not_found", PASS, PASS, PASS, PASS),
    ("HV00K", "fdw_reply_handle", PASS, PASS, PASS, PASS),
    ("HV00Q", "fdw_schema_not_found", PASS, PASS, PASS, PASS),
    ("HV00R", "fdw_table_not_found", PASS, PASS, PASS, PASS),
    ("HV00L", "fdw_unable_to_create_execution", PASS, PASS, PASS, PASS),
    ("HV00M", "fdw_unable_to_create_reply", PASS, PASS, PASS, PASS),
    ("HV00N", "fdw_unable_to_establish_connection", PASS, PASS, PASS, PASS),
    # Class P0: PL/pgSQL Error
    ("P0000", "plpgsql_error", PASS, PASS, PASS, PASS),
    ("P0001", "raise_exception", PASS, PASS, PASS, PASS),
    ("P0002", "no_data_found", PASS, PASS, PASS, PASS),
    ("P0003", "too_many_rows", PASS, PASS, PASS, PASS),
    ("P0004", "assert_failure", PASS, PASS, PASS, PASS),
    # Class XX: Internal Error
    ("XX000", "internal_error", PASS, PASS, PASS, PASS),
    ("XX001", "data_corrupted", PASS, PASS, PASS, PASS),
    ("XX002", "index_corrupted", PASS, PASS, PASS, PASS),
)


def test_the_table_lists_every_code() -> None:
    codes = read_errcodes()
    assert len(codes) == 260
    assert {code for code, *_ in TABLE} == set(codes)
    assert len(TABLE) == len(codes)
    assert all(codes[code] == name for code, name, *_ in TABLE)
    classes = {code[:2] for code in codes}
    assert {"00", "01", "08", "23", "25", "57", "XX"} <= classes  # 00 to XX


@pytest.mark.parametrize("row", TABLE, ids=lambda row: f"{row[0]}-{row[1]}")
def test_every_sqlstate_through_both_drivers(row: Row) -> None:
    code, name, *expected = row
    texts = (f"{name}: {HOSTILE}", HOSTILE, HOSTILE)
    for label, error in forms(code, *texts, params={"name": HOSTILE}):
        for phase, wanted in zip(PHASES, expected, strict=True):
            # The code alone decides: SQLAlchemy's disconnect flag does not change it either.
            for is_disconnect in (False, True):
                got = outcome(error, is_disconnect=is_disconnect, phase=phase)
                assert got is wanted, (label, phase, is_disconnect)


def test_the_table_counts() -> None:
    """The counts docs/reliability.md quotes."""
    per_phase = [Counter(row[2 + i] for row in TABLE) for i in range(len(PHASES))]
    assert per_phase[0] == {PASS: 249, RETRY: 11}  # connect
    assert per_phase[1] == {PASS: 249, RETRY: 11}  # in a transaction
    assert per_phase[2] == {PASS: 249, UNKNOWN: 10, RETRY: 1}  # at COMMIT / autocommit
    assert per_phase[3] == {PASS: 249, LOST: 11}  # pre-ping


# Errors without a SQLSTATE: the type decides, and words only on the primary message.
NO_CODE: list[tuple[str, Callable[[], BaseException], bool, tuple[Outcome, ...]]] = [
    (
        "asyncpg: connection is closed",
        lambda: asyncpg.InterfaceError("connection is closed"),
        False,
        (RETRY, RETRY, UNKNOWN, LOST),
    ),
    (
        "asyncpg: another operation in progress",
        lambda: asyncpg.InterfaceError(
            "cannot perform operation: another operation is in progress"
        ),
        False,
        (PASS, PASS, PASS, PASS),
    ),
    (
        "psycopg: the server closed the connection (SQLAlchemy: a disconnect)",
        lambda: psycopg.OperationalError(
            "consuming input failed: server closed the connection unexpectedly"
        ),
        True,
        (RETRY, RETRY, UNKNOWN, LOST),
    ),
    (
        "psycopg: connect refused",
        lambda: psycopg.OperationalError(
            'connection failed: connection to server at "127.0.0.1", port 1 failed: '
            "Connection refused\n\tIs the server running on that host?"
        ),
        False,
        (RETRY, PASS, PASS, PASS),
    ),
    (
        "psycopg: connect while shutting down",
        lambda: psycopg.OperationalError(
            'connection failed: connection to server at "127.0.0.1", port 1 failed: '
            "FATAL:  the database system is shutting down"
        ),
        False,
        (RETRY, PASS, PASS, PASS),
    ),
    (
        "psycopg: wrong password",
        lambda: psycopg.OperationalError(
            'connection failed: connection to server at "127.0.0.1", port 1 failed: '
            'FATAL:  password authentication failed for user "app"'
        ),
        False,
        (PASS, PASS, PASS, PASS),
    ),
    (
        "psycopg: words only in a later line (libpq's DETAIL)",
        lambda: psycopg.OperationalError(
            "something else went wrong\nDETAIL:  connection is closed, connection refused"
        ),
        False,
        (PASS, PASS, PASS, PASS),
    ),
    (
        "asyncpg: words only in DETAIL and HINT",
        lambda: asyncpg.InterfaceError(
            "something else", detail="connection is closed", hint="connection refused"
        ),
        False,
        (PASS, PASS, PASS, PASS),
    ),
    (
        "refused",
        lambda: ConnectionRefusedError(111, "refused"),
        False,
        (RETRY,) * 2 + (UNKNOWN, LOST),
    ),
    ("reset", lambda: ConnectionResetError(104, "reset"), False, (RETRY, RETRY, UNKNOWN, LOST)),
    ("timeout", lambda: TimeoutError(), False, (RETRY, PASS, PASS, PASS)),
    (
        "certificate refused",
        lambda: ssl.SSLCertVerificationError("certificate verify failed"),
        False,
        (PASS, PASS, PASS, PASS),
    ),
]


@pytest.mark.parametrize(
    ("error", "is_disconnect", "expected"),
    [(make, flag, expected) for _, make, flag, expected in NO_CODE],
    ids=[label for label, *_ in NO_CODE],
)
def test_errors_without_a_sqlstate(
    error: Callable[[], BaseException], is_disconnect: bool, expected: tuple[Outcome, ...]
) -> None:
    for phase, wanted in zip(PHASES, expected, strict=True):
        assert outcome(error(), is_disconnect=is_disconnect, phase=phase) is wanted, phase


@pytest.mark.parametrize(
    ("statement", "ends"),
    [
        ("COMMIT", True),
        ("commit", True),
        ("  END", True),
        ("COMMIT PREPARED 'tx1'", True),
        ("PREPARE TRANSACTION 'tx1'", True),
        ("insert into t values (1); commit", True),
        ("/* app: checkout */ COMMIT", True),
        ("-- done\ncommit and chain", True),
        ("select 1", False),
        ("insert into commits values (1)", False),
        ("select endless from t", False),
        (None, False),
    ],
)
def test_statements_that_end_a_transaction(statement: str | None, ends: bool) -> None:
    assert commits(statement) is ends
