"""Errors as users read them (audiosweep.errors)."""

from audiosweep.errors import DatasetError, Terminated, UserError, error_text


def test_our_errors_read_as_their_message_others_with_their_type():
    assert error_text(DatasetError("data_dir: no such folder 'x'; fix the path")) == "data_dir: no such folder 'x'; " \
                                                                                     "fix the path"
    assert error_text(UserError("boom")) == "boom"
    assert error_text(ZeroDivisionError("division by zero")) == "ZeroDivisionError: division by zero"  # a bug
    assert error_text(KeyboardInterrupt("received SIGINT")) == "KeyboardInterrupt: received SIGINT"
    assert error_text(Terminated("received SIGTERM")) == "Terminated: received SIGTERM"  # the record's reason says it
