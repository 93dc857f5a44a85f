"""Forms of the admin screens."""

from __future__ import annotations

from typing import Any

from flask_wtf import FlaskForm
from wtforms import (
    BooleanField,
    PasswordField,
    SelectChoice,
    SelectField,
    StringField,
    SubmitField,
    TextAreaField,
)
from wtforms.validators import DataRequired, Length

from portal.presets import marker_messages
from portal.services.auth_system_validation import param_error_key
from portal.sso.fields import (
    CHOICE,
    FIELDS,
    HEADERS,
    LABELS,
    LOGIN_MODES,
    LOGOFF_METHODS,
    PRESET_FIELDS,
    PROFILE_METHODS,
    PROFILE_REQUEST_FIELDS,
    SECRET_FIELDS,
    TOKEN_METHODS,
    TYPES,
    URL,
)
from portal.sso.profile_fields import FIELD_OPTIONS, PARAM_OPTIONS, PROFILE_FIELDS


class TeamForm(FlaskForm):
    """Create or rename a team."""

    name = StringField("Team name", validators=[DataRequired(), Length(max=120)])
    submit = SubmitField("Save")


class ConfirmForm(FlaskForm):
    """A bare form that carries the CSRF token of a confirmation."""

    submit = SubmitField("Confirm")


#: A write-only field: PasswordField never renders a value back, and neither does render_kw.
_WRITE_ONLY = {"value": "", "autocomplete": "new-password"}
#: A whole number of minutes.
_MINUTES = {"inputmode": "numeric", "pattern": "[0-9]*"}


class AuthSystemForm(FlaskForm):
    """Add or edit an authentication system; the rules live in the auth_systems service."""

    type = SelectField(LABELS["type"], choices=[SelectChoice(k, v) for k, v in TYPES.items()])
    name = StringField(LABELS["name"])
    client_id = StringField(LABELS["client_id"])
    # Write-only: PasswordField never renders a value back, and neither does render_kw.
    client_secret = PasswordField(
        LABELS["client_secret"], render_kw={"value": "", "autocomplete": "new-password"}
    )
    login_url = StringField(LABELS["login_url"])
    token_url = StringField(LABELS["token_url"])
    token_method = SelectField(
        LABELS["token_method"], choices=[SelectChoice(m) for m in TOKEN_METHODS]
    )
    token_headers = TextAreaField(LABELS["token_headers"], render_kw={"rows": 3})
    token_body = TextAreaField(LABELS["token_body"], render_kw={"rows": 3})
    platform_start = BooleanField(LABELS["platform_start"])
    refresh_token_body = TextAreaField(LABELS["refresh_token_body"], render_kw={"rows": 3})
    access_token_path = StringField(LABELS["access_token_path"])
    issuer = StringField(LABELS["issuer"])
    jwks_url = StringField(LABELS["jwks_url"])
    scope = StringField(LABELS["scope"])
    sso_login_url = StringField(LABELS["sso_login_url"])
    vendor_id = StringField(LABELS["vendor_id"])
    vendor_username = StringField(LABELS["vendor_username"])
    vendor_password = PasswordField(LABELS["vendor_password"], render_kw=_WRITE_ONLY)
    vendor_block = PasswordField(LABELS["vendor_block"], render_kw=_WRITE_ONLY)
    webhook_secret = PasswordField(LABELS["webhook_secret"], render_kw=_WRITE_ONLY)
    sso_web_service_url = StringField(LABELS["sso_web_service_url"])
    ims_web_service_url = StringField(LABELS["ims_web_service_url"])
    data_services_url = StringField(LABELS["data_services_url"])
    data_services_username = StringField(LABELS["data_services_username"])
    data_services_password = PasswordField(LABELS["data_services_password"], render_kw=_WRITE_ONLY)
    logout_url = StringField(LABELS["logout_url"])
    profile_edit_url = StringField(LABELS["profile_edit_url"])
    logoff_url = StringField(LABELS["logoff_url"])
    logoff_method = SelectField(
        LABELS["logoff_method"], choices=[SelectChoice(m) for m in LOGOFF_METHODS]
    )
    logoff_headers = TextAreaField(LABELS["logoff_headers"], render_kw={"rows": 3})
    logoff_body = TextAreaField(LABELS["logoff_body"], render_kw={"rows": 3})
    # Text, not IntegerField: the service reads the number and words the error beside it.
    recheck_minutes = StringField(LABELS["recheck_minutes"], render_kw=_MINUTES)
    grace_minutes = StringField(LABELS["grace_minutes"], render_kw=_MINUTES)
    login_label = StringField(LABELS["login_label"])
    login_mode = SelectField(
        LABELS["login_mode"], choices=[SelectChoice(k, v) for k, v in LOGIN_MODES.items()]
    )
    onboarding_team_id = SelectField(
        LABELS["onboarding_team_id"], choices=[SelectChoice("", "None")]
    )
    enabled = BooleanField(LABELS["enabled"])
    trusts_email = BooleanField(LABELS["trusts_email"])
    trusts_username = BooleanField(LABELS["trusts_username"])
    # Import from issuer: not saved; the view fills the form from discovery and re-renders it.
    issuer_url = StringField("Issuer URL")
    import_issuer = SubmitField("Import from issuer")
    submit = SubmitField("Save")

    def set_team_choices(self, teams: list[Any]) -> None:
        """Offer the existing teams, and None, as Onboarding Team."""
        self.onboarding_team_id.choices = [SelectChoice("", "None")] + [
            SelectChoice(str(t.id), t.name) for t in teams
        ]

    def param_rows(self) -> list[dict[str, Any]]:
        """Return each profile parameter row: key, label, path field and option fields."""
        return [
            {
                "key": key,
                "label": label,
                "path": self[f"param_{key}_path"],
                "options": [self[f"param_{key}_{suffix}"] for suffix in FIELD_OPTIONS[key]],
            }
            for key, label in PROFILE_FIELDS
        ]

    def profile_request_rows(self) -> list[dict[str, Any]]:
        """Return each profile request slot: its position and its four fields by part."""
        return [
            {"position": position, **{part: self[name] for part, name in parts.items()}}
            for position, parts in PROFILE_REQUEST_FIELDS.items()
        ]

    def to_data(self) -> dict[str, Any]:
        """Return the typed values as the service's data mapping."""
        data: dict[str, Any] = {name: self[name].data for name in LABELS}
        for name in SECRET_FIELDS:
            data[name] = self[name].data or ""
        data["params"] = {}
        for row in self.param_rows():
            values: dict[str, Any] = {"path": row["path"].data or ""}
            for option, suffix in zip(row["options"], FIELD_OPTIONS[row["key"]], strict=True):
                values[suffix] = bool(option.data)
            data["params"][row["key"]] = values
        return data

    def fill(self, values: dict[str, str]) -> None:
        """Put ``values`` (by field name) into the form, as if the manager had typed them."""
        for name, value in values.items():
            self[name].data = value

    def mark_unfinished(self) -> None:
        """Describe each field still holding a ``{marker}`` (without an error) with what to do.

        The form's macros show a field's description beside it, so a preset's parts to
        complete stand out before the manager even presses Save.
        """
        fields = [self[name] for name in PRESET_FIELDS if FIELDS[name].kind != CHOICE]
        fields += [row["path"] for row in self.param_rows()] + [self.issuer_url]
        for target in fields:
            messages = marker_messages(target.data)
            target.description = "" if target.errors else " ".join(messages)

    @classmethod
    def form_data(cls, data: dict[str, Any]) -> dict[str, Any]:
        """Flatten the service's data mapping into this form's field names."""
        flat = {key: value for key, value in data.items() if key != "params"}
        for name in SECRET_FIELDS:
            flat[name] = ""
        flat["issuer_url"] = data.get("issuer") or ""
        team = flat.get("onboarding_team_id")
        flat["onboarding_team_id"] = "" if team is None else str(team)
        for key, values in data.get("params", {}).items():
            flat[f"param_{key}_path"] = values.get("path", "")
            for suffix in FIELD_OPTIONS.get(key, ()):
                flat[f"param_{key}_{suffix}"] = bool(values.get(suffix))
        return flat

    def apply_errors(self, errors: dict[str, list[str]]) -> None:
        """Show the service's messages beside the fields they are about."""
        for key, messages in errors.items():
            name = key
            for field_key, _label in PROFILE_FIELDS:
                if key == param_error_key(field_key):
                    name = f"param_{field_key}_path"
            target = self._fields.get(name) or self.name
            target.errors = [*target.errors, *messages]


for _key, _label in PROFILE_FIELDS:
    setattr(AuthSystemForm, f"param_{_key}_path", StringField(_label))
    # Only the options this field offers: a crafted POST of any other is never read.
    for _suffix in FIELD_OPTIONS[_key]:
        setattr(AuthSystemForm, f"param_{_key}_{_suffix}", BooleanField(PARAM_OPTIONS[_suffix]))


def _profile_request_field(name: str) -> Any:
    """Return the form field of one part of a profile request, by its kind."""
    field = FIELDS[name]
    if field.kind == CHOICE:
        return SelectField(field.label, choices=[SelectChoice(m) for m in PROFILE_METHODS])
    if field.kind == URL:
        return StringField(field.label)
    rows = 3 if field.kind == HEADERS else 4
    return TextAreaField(field.label, render_kw={"rows": rows})


for _parts in PROFILE_REQUEST_FIELDS.values():
    for _name in _parts.values():
        setattr(AuthSystemForm, _name, _profile_request_field(_name))
