"""``TransactWriteItems`` for the emulator without a copy of every table it touches.

moto 5 makes a transaction atomic by ``copy.deepcopy`` of each whole table it writes before
it starts, and puts that copy back when an item's condition fails. Every job's terminal
transition is a transaction (its rollup add rides along, ``imagepipe/service/rollups.py``),
so with 100,000 job items each job paid for a copy of 100,000 items. Here the transaction
keeps a copy of only the items it writes (their state before it) and puts exactly those back
on a rollback: the same outcome — every write or none, the same cancellation reasons, the
same exceptions — in time proportional to the transaction, not to the table.
``tests/unit/test_moto_transactions.py`` compares it with moto's own on commits and rollbacks.
"""

from __future__ import annotations

import copy
from typing import Any


def _snapshot(backend: Any, op: dict[str, Any], op_type: str) -> tuple[Any, Any, Any, Any] | None:
    """``(table, hash key, range key, copy of the item or None)`` before ``op`` runs."""
    from moto.dynamodb.models.dynamo_type import DynamoType

    table = backend.tables.get(op.get("TableName"))
    if table is None:
        return None
    key = op["Item"] if op_type == "Put" else op.get("Key") or {}
    if table.hash_key_attr not in key:
        return None
    hash_key = DynamoType(key[table.hash_key_attr])
    range_attr = table.range_key_attr
    range_key = DynamoType(key[range_attr]) if range_attr and range_attr in key else None
    if table.range_key_attr and range_key is None:
        return None
    current = table.get_item(hash_key, range_key)
    return table, hash_key, range_key, None if current is None else copy.deepcopy(current)


def _restore(snapshots: list[tuple[Any, Any, Any, Any]]) -> None:
    from pipeline.stack.moto_query import bump

    for table, hash_key, range_key, item in reversed(snapshots):
        bump(table)
        if item is None:
            table.delete_item(hash_key, range_key)
        elif range_key is not None:
            table.items[hash_key][range_key] = item
        else:
            table.items[hash_key] = item


def install() -> None:
    """Replace ``DynamoDBBackend.transact_write_items`` (moto 5.x's logic, item-level undo)."""
    from moto.dynamodb import models
    from moto.dynamodb.exceptions import (
        ConditionalCheckFailed,
        MockValidationException,
        MultipleTransactionsException,
        TooManyTransactionsException,
        TransactionCanceledException,
        TransactWriteSingleOpException,
    )

    backend_cls = models.DynamoDBBackend
    if not hasattr(models, "get_filter_expression"):
        raise RuntimeError("this moto has no dynamodb.models.get_filter_expression; "
                           "update moto_transactions.py")
    if getattr(backend_cls.transact_write_items, "original", None) is not None:
        return  # installed already
    original = backend_cls.transact_write_items

    def transact_write_items(self: Any, transact_items: list[dict[str, Any]]) -> None:
        if len(transact_items) > 100:
            raise TooManyTransactionsException()
        target_items: set[tuple[str, str]] = set()
        snapshots: list[tuple[Any, Any, Any, Any]] = []

        def check_unicity(table_name: str, key: dict[str, Any]) -> None:
            item = (str(table_name), str(dict(sorted(key.items()))))
            if item in target_items:
                raise MultipleTransactionsException()
            target_items.add(item)

        errors: list[tuple[Any, Any, Any]] = []
        for item in transact_items:
            original_item = None
            if len(list(item.keys())) > 1:
                raise TransactWriteSingleOpException
            try:
                op_type, op = next(iter(item.items()))
                if op_type not in {"ConditionCheck", "Put", "Delete", "Update"}:
                    raise ValueError("Unsupported transaction operation")
                table_name = op["TableName"]
                condition_expression = op.get("ConditionExpression")
                names = op.get("ExpressionAttributeNames")
                values = op.get("ExpressionAttributeValues")
                if op_type == "Put":
                    attrs = op["Item"]
                    table = self.get_table(table_name)
                    key = {table.hash_key_attr: attrs[table.hash_key_attr]}
                    if table.range_key_attr is not None:
                        key[table.range_key_attr] = attrs[table.range_key_attr]
                else:
                    key = op["Key"]
                check_unicity(table_name, key)
                current = self.get_item(table_name, key)
                if condition_expression is not None:
                    condition_op = models.get_filter_expression(condition_expression, names, values)
                    if not condition_op.expr(current):
                        if op.get("ReturnValuesOnConditionCheckFailure") == "ALL_OLD" and current:
                            original_item = current.to_json()["Attributes"]
                        raise ConditionalCheckFailed(item=original_item)
                if op_type != "ConditionCheck":
                    snap = _snapshot(self, op, op_type)
                    if snap is not None:
                        snapshots.append(snap)
                if op_type == "Put":
                    self.put_item(table_name, op["Item"], condition_expression=condition_expression,
                                  expression_attribute_names=names, expression_attribute_values=values)
                elif op_type == "Delete":
                    self.delete_item(table_name, key, condition_expression=condition_expression,
                                     expression_attribute_names=names, expression_attribute_values=values)
                elif op_type == "Update":
                    self.update_item(table_name, key, update_expression=op["UpdateExpression"],
                                     condition_expression=condition_expression,
                                     expression_attribute_names=names, expression_attribute_values=values)
                errors.append((None, None, None))
            except (MultipleTransactionsException, MockValidationException):
                _restore(snapshots)
                raise
            except ConditionalCheckFailed as e:
                errors.append(("ConditionalCheckFailed", str(e.message), original_item))
            except Exception as e:  # noqa: BLE001 (moto's own: any error cancels the transaction)
                errors.append((type(e).__name__, str(e), original_item))
        if any(code is not None for code, _, _ in errors):
            _restore(snapshots)
            raise TransactionCanceledException(errors)

    transact_write_items.original = original  # type: ignore[attr-defined]
    backend_cls.transact_write_items = transact_write_items
