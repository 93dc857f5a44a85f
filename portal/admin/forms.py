"""Forms of the admin screens."""

from flask_wtf import FlaskForm
from wtforms import StringField, SubmitField
from wtforms.validators import DataRequired, Length


class TeamForm(FlaskForm):
    """Create or rename a team."""

    name = StringField("Team name", validators=[DataRequired(), Length(max=120)])
    submit = SubmitField("Save")


class ConfirmForm(FlaskForm):
    """A bare form that carries the CSRF token of a confirmation."""

    submit = SubmitField("Confirm")
