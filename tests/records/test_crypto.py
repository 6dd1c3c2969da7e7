from __future__ import annotations

import base64
import os

import pytest
from django.core.exceptions import ImproperlyConfigured, PermissionDenied
from django.utils import timezone

from audit.events import EventType
from audit.models import AuditEvent
from retention.models import DataKey, Message
from retention.records import crypto
from retention.records.crypto import ConversationCipher, DecryptionError, KeyDestroyedError
from retention.records.keys import data_keys_by_master_key, do_rotate_master_key
from retention.records.store import NewAttachment, read_attachment, read_body, store_attachment
from tests.conftest import make_chat

pytestmark = pytest.mark.django_db

BODY = "收货地址：浙江省杭州市西湖区文三路 398 号 2 幢 301 室，电话 13800138000"


@pytest.fixture
def chat(org, cast):
    return make_chat(org.hangzhou, [cast.staff], [BODY, "好的，已登记"])


def destroy_key(conversation) -> None:
    """What a server-side wipe's shredding phase does to a conversation's data key."""
    DataKey.objects.filter(conversation=conversation).update(
        wrapped_key=None, destroyed_at=timezone.now()
    )


def test_bodies_are_stored_encrypted_and_read_back(chat):
    message = Message.objects.filter(conversation=chat).order_by("id").first()
    raw = bytes(message.body)
    assert BODY.encode() not in raw
    assert b"13800138000" not in raw
    assert read_body(ConversationCipher.for_conversation(chat), message) == BODY


def test_each_conversation_has_its_own_key(org, cast, chat):
    other = make_chat(org.hangzhou, [cast.staff], ["另一个会话"])
    assert bytes(DataKey.objects.get(conversation=chat).wrapped_key) != bytes(
        DataKey.objects.get(conversation=other).wrapped_key
    )
    # A ciphertext moved into another conversation does not decrypt there.
    stolen = Message.objects.filter(conversation=chat).first().body
    with pytest.raises(DecryptionError):
        ConversationCipher.for_conversation(other).decrypt(stolen)


def test_attachment_bytes_are_encrypted_in_storage(chat):
    cipher = ConversationCipher.for_conversation(chat)
    message = Message.objects.filter(conversation=chat).first()
    content = "发票抬头：杭州清风电商有限公司".encode()
    attachment = store_attachment(
        chat, cipher, message, NewAttachment("发票.txt", content, "text/plain")
    )
    with attachment.file.open("rb") as handle:
        assert content not in handle.read()
    assert read_attachment(cipher, attachment) == content


def test_destroying_the_key_makes_every_copy_unreadable(chat, cast):
    message = Message.objects.filter(conversation=chat).first()
    destroy_key(chat)

    key = DataKey.objects.get(conversation=chat)
    assert key.wrapped_key is None
    assert key.destroyed_at is not None
    with pytest.raises(KeyDestroyedError):
        ConversationCipher.for_conversation(chat)
    # The rows are still there, and no other key opens them: not another conversation's,
    # not a fresh one made for this conversation id.
    other = make_chat(chat.department, [], ["别的会话"])
    with pytest.raises(DecryptionError):
        ConversationCipher.for_conversation(other).decrypt(message.body)
    with pytest.raises(DecryptionError):
        ConversationCipher(chat.pk, crypto.new_wrapped_key(chat.pk)).decrypt(message.body)


def test_a_different_master_key_cannot_unwrap(chat, settings):
    settings.QINGLI_MASTER_KEY = base64.b64encode(b"\x01" * 32).decode()
    crypto.forget_keys()
    try:
        with pytest.raises(DecryptionError):
            ConversationCipher.for_conversation(chat)
    finally:
        settings.QINGLI_MASTER_KEY = None
        crypto.forget_keys()


@pytest.mark.parametrize("bad", ["not base64!", base64.b64encode(b"short").decode()])
def test_a_malformed_master_key_is_refused_with_a_clear_message(settings, bad):
    settings.QINGLI_MASTER_KEY = bad
    crypto.forget_keys()
    try:
        with pytest.raises(ImproperlyConfigured, match="QINGLI_MASTER_KEY"):
            crypto.master_key()
    finally:
        settings.QINGLI_MASTER_KEY = None
        crypto.forget_keys()


def test_without_a_master_key_production_refuses_to_start(settings):
    settings.QINGLI_MASTER_KEY = None
    settings.QINGLI_ALLOW_LOCAL_MASTER_KEY = False
    crypto.forget_keys()
    try:
        with pytest.raises(ImproperlyConfigured, match="QINGLI_MASTER_KEY is not set"):
            crypto.master_key()
    finally:
        crypto.forget_keys()


def test_zero_setup_generates_a_local_master_key(settings, tmp_path, capsys):
    settings.QINGLI_MASTER_KEY = None
    settings.QINGLI_ALLOW_LOCAL_MASTER_KEY = True
    settings.QINGLI_MASTER_KEY_FILE = tmp_path / "master.key"
    crypto.forget_keys()
    try:
        key = crypto.master_key()
        assert len(key) == 32
        assert (tmp_path / "master.key").stat().st_mode & 0o777 == 0o600
        assert "generated a local master key" in capsys.readouterr().err
        crypto.forget_keys()
        assert crypto.master_key() == key  # read back, not generated again
    finally:
        crypto.forget_keys()


@pytest.fixture
def new_master(settings):
    """Make a fresh key current and the old one retired, as an operator would."""
    old = settings.QINGLI_MASTER_KEY
    settings.QINGLI_MASTER_KEY = base64.b64encode(os.urandom(32)).decode()
    settings.QINGLI_RETIRED_MASTER_KEYS = [old]
    crypto.forget_keys()
    yield old
    crypto.forget_keys()


def test_rotation_moves_every_key_and_keeps_records_readable(chat, cast, new_master, settings):
    # Still readable through the retired key before rotation.
    assert read_body(ConversationCipher.for_conversation(chat), first_message(chat)) == BODY
    outcome = do_rotate_master_key(actor=cast.admin)
    assert outcome == {"rewrapped": 1, "already_current": 0}
    assert set(data_keys_by_master_key()) == {crypto.current_master_key_id().hex()}
    settings.QINGLI_RETIRED_MASTER_KEYS = []  # the old key is destroyed
    crypto.forget_keys()
    assert read_body(ConversationCipher.for_conversation(chat), first_message(chat)) == BODY
    assert AuditEvent.objects.get(event_type=EventType.MASTER_KEY_ROTATED).details["rewrapped"] == 1
    assert do_rotate_master_key(actor=None) == {"rewrapped": 0, "already_current": 1}


def test_a_backup_of_a_shredded_key_reads_nothing_once_its_master_key_is_retired(
    chat, cast, settings
):
    backup = bytes(DataKey.objects.get(conversation=chat).wrapped_key)  # last night's backup
    message = first_message(chat)
    destroy_key(chat)
    # With yesterday's master key still in service, the backup would still open it...
    assert ConversationCipher(chat.pk, backup).decrypt_text(message.body) == BODY
    # ...so the key is rotated and the old master key destroyed, as the docs prescribe.
    settings.QINGLI_MASTER_KEY = base64.b64encode(os.urandom(32)).decode()
    settings.QINGLI_RETIRED_MASTER_KEYS = []
    crypto.forget_keys()
    try:
        with pytest.raises(DecryptionError, match="no longer configured"):
            ConversationCipher(chat.pk, backup)
    finally:
        crypto.forget_keys()


def test_rotation_never_resurrects_a_key_destroyed_meanwhile(chat, cast, new_master):
    destroy_key(chat)
    assert do_rotate_master_key(actor=None) == {"rewrapped": 0, "already_current": 0}
    assert DataKey.objects.get(conversation=chat).wrapped_key is None


def test_only_admins_rotate(cast):
    with pytest.raises(PermissionDenied):
        do_rotate_master_key(actor=cast.security)


def first_message(conversation) -> Message:
    return Message.objects.filter(conversation=conversation).order_by("id").first()
