"""Forms of the member groups, content, mapping rules and users admin screens."""

from flask_wtf import FlaskForm
from wtforms import (
    BooleanField,
    SelectChoice,
    SelectField,
    SelectMultipleField,
    StringField,
    SubmitField,
    TextAreaField,
)
from wtforms.validators import DataRequired, Length, Optional

from portal.models.content import CONTENT_KINDS, KIND_LABELS, VISIBILITIES
from portal.models.group import RULE_KINDS
from portal.services.group_mapping import SETTINGS_LABELS


class GroupForm(FlaskForm):
    """Create or edit a member group."""

    name = StringField("Group name", validators=[DataRequired(), Length(max=120)])
    description = TextAreaField("Description", validators=[Optional(), Length(max=2000)])
    submit = SubmitField("Save")


class ContentForm(FlaskForm):
    """Create or edit a content item."""

    title = StringField("Title", validators=[DataRequired(), Length(max=200)])
    kind = SelectField("Kind", choices=[SelectChoice(k, KIND_LABELS[k]) for k in CONTENT_KINDS])
    url = StringField("Link or embed URL", validators=[DataRequired()])
    embed = BooleanField("Embed this URL in the item page")
    description = TextAreaField("Description", validators=[Optional(), Length(max=5000)])
    visibility = SelectField(
        "Who may open it", choices=[SelectChoice(k, v) for k, v in VISIBILITIES.items()]
    )
    groups = SelectMultipleField("Member groups", coerce=int, validate_choice=False)
    submit = SubmitField("Save")


class RuleForm(FlaskForm):
    """Add a mapping rule to an authentication system."""

    kind = SelectField("When", choices=[SelectChoice(k, v) for k, v in RULE_KINDS.items()])
    values = TextAreaField("Values", validators=[DataRequired()])
    group = SelectField("Member group", coerce=int, validate_choice=False)
    submit = SubmitField("Add rule")


class MappingSettingsForm(FlaskForm):
    """Default group, sign-in restriction and object key of a system's group mapping."""

    default_group = SelectField("Default group", coerce=int, validate_choice=False)
    restrict_sign_in = BooleanField("Allow sign-in only when Membership Status is one of")
    allowed_statuses = TextAreaField("Allowed Membership Status values")
    deny_message = TextAreaField(
        "Message shown when sign-in is not allowed", validators=[Length(max=2000)]
    )
    group_object_key = StringField(
        "Key read from Groups values that are objects", validators=[Length(max=120)]
    )
    allowed_email_domains = TextAreaField(
        SETTINGS_LABELS["allowed_email_domains"], validators=[Length(max=20000)]
    )
    required_claim = StringField(SETTINGS_LABELS["required_claim"], validators=[Length(max=255)])
    required_claim_message = TextAreaField(
        SETTINGS_LABELS["required_claim_message"], validators=[Length(max=2000)]
    )
    existing_accounts_only = BooleanField(SETTINGS_LABELS["existing_accounts_only"])
    existing_accounts_message = TextAreaField(
        SETTINGS_LABELS["existing_accounts_message"], validators=[Length(max=2000)]
    )
    submit = SubmitField("Save settings")


class AssignGroupForm(FlaskForm):
    """Assign a member group to a user by hand."""

    group = SelectField("Member group", coerce=int, validate_choice=False)
    submit = SubmitField("Assign group")
