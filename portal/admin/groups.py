"""Admin: member groups, and each authentication system's group mapping rules."""

from __future__ import annotations

from flask import flash, redirect, render_template, url_for
from flask_login import current_user
from wtforms import SelectChoice

from portal.admin import bp
from portal.admin.forms import ConfirmForm
from portal.admin.group_forms import GroupForm, MappingSettingsForm, RuleForm
from portal.admin.saving import saved
from portal.lookups import found_or_404
from portal.models import AuthSystem
from portal.services import group_mapping
from portal.services import groups as svc
from portal.services.auth_systems import get_auth_system


@bp.route("/groups", methods=["GET", "POST"])
def groups():
    """List member groups and create one."""
    form = GroupForm()
    if form.validate_on_submit():
        group = saved(
            form.name,
            svc.GroupError,
            lambda: svc.create_group(form.name.data or "", form.description.data or ""),
        )
        if group:
            flash(f"Member group {group.name} created.", "success")
            return redirect(url_for("admin.groups"))
    return render_template("admin/groups.html", form=form, groups=svc.list_groups())


@bp.route("/groups/<int:group_id>/edit", methods=["GET", "POST"])
def edit_group(group_id: int):
    """Rename a member group or change its description."""
    group = found_or_404(svc.get_group(group_id))
    form = GroupForm(obj=group)
    if form.validate_on_submit():
        if saved(
            form.name,
            svc.GroupError,
            lambda: svc.update_group(group, form.name.data or "", form.description.data or ""),
        ):
            flash(f"Member group {group.name} saved.", "success")
            return redirect(url_for("admin.groups"))
    return render_template("admin/groups_edit.html", form=form, group=group)


@bp.route("/groups/<int:group_id>/delete", methods=["GET", "POST"])
def delete_group(group_id: int):
    """Ask first, saying what the deletion touches; delete on confirmation."""
    group = found_or_404(svc.get_group(group_id))
    form = ConfirmForm()
    if form.validate_on_submit():
        name = group.name
        svc.delete_group(group, actor=current_user._get_current_object())
        flash(f"Member group {name} deleted.", "success")
        return redirect(url_for("admin.groups"))
    usage = svc.describe_group_usage(group)
    return render_template("admin/groups_delete.html", group=group, usage=usage, form=form)


def _group_choices(blank: str | None = None) -> list[SelectChoice]:
    choices = [SelectChoice(g.id, g.name) for g in svc.list_groups()]
    return ([SelectChoice(0, blank)] if blank else []) + choices


def _mapping_page(system: AuthSystem, rule_form: RuleForm, settings_form: MappingSettingsForm):
    return render_template(
        "admin/groups_mapping.html",
        system=system,
        rules=group_mapping.list_rules(system),
        rule_form=rule_form,
        settings_form=settings_form,
        confirm=ConfirmForm(),
        has_groups=len(rule_form.group.choices or []) > 0,
    )


def _forms(system: AuthSystem, submitted: str = "") -> tuple[RuleForm, MappingSettingsForm]:
    """Build both forms; only the ``submitted`` one reads the request's form data."""
    settings = group_mapping.get_mapping_settings(system)
    keep = {} if submitted == "rule" else {"formdata": None}
    rule_form = RuleForm(prefix="rule", **keep)
    rule_form.group.choices = _group_choices()
    keep = {} if submitted == "settings" else {"formdata": None}
    settings_form = MappingSettingsForm(
        prefix="settings",
        **keep,
        data={
            "default_group": settings.default_group_id or 0,
            "restrict_sign_in": settings.restrict_sign_in,
            "allowed_statuses": "\n".join(settings.allowed_statuses_display or []),
            "deny_message": settings.deny_message,
            "group_object_key": settings.group_object_key,
            "allowed_email_domains": "\n".join(settings.allowed_email_domains or []),
            "required_claim": settings.required_claim,
            "required_claim_message": settings.required_claim_message,
            "existing_accounts_only": settings.existing_accounts_only,
            "existing_accounts_message": settings.existing_accounts_message,
        },
    )
    settings_form.default_group.choices = _group_choices("No default group")
    return rule_form, settings_form


@bp.route("/auth-systems/<int:system_id>/groups")
def auth_system_groups(system_id: int):
    """Show a system's group mapping: rules, default group, sign-in restriction."""
    system = found_or_404(get_auth_system(system_id))
    return _mapping_page(system, *_forms(system))


@bp.route("/auth-systems/<int:system_id>/groups/rules", methods=["POST"])
def add_group_rule(system_id: int):
    """Add a mapping rule."""
    system = found_or_404(get_auth_system(system_id))
    rule_form, settings_form = _forms(system, "rule")
    if rule_form.validate_on_submit():
        try:
            rules = group_mapping.add_rule(
                system,
                rule_form.kind.data or "",
                rule_form.values.data or "",
                rule_form.group.data,
                actor=current_user._get_current_object(),
            )
        except svc.GroupError as exc:
            rule_form.values.errors.append(str(exc))
        else:
            flash(f"{len(rules)} rule(s) added.", "success")
            return redirect(url_for("admin.auth_system_groups", system_id=system.id))
    return _mapping_page(system, rule_form, settings_form), 400


@bp.route("/auth-systems/<int:system_id>/groups/rules/<int:rule_id>/delete", methods=["POST"])
def delete_group_rule(system_id: int, rule_id: int):
    """Delete a mapping rule."""
    system = found_or_404(get_auth_system(system_id))
    rule = found_or_404(group_mapping.get_rule(system, rule_id))
    if ConfirmForm().validate_on_submit():
        group_mapping.delete_rule(rule, actor=current_user._get_current_object())
        flash("Rule deleted. Members lose its group at their next sign-in.", "success")
    return redirect(url_for("admin.auth_system_groups", system_id=system.id))


@bp.route("/auth-systems/<int:system_id>/groups/settings", methods=["POST"])
def save_group_settings(system_id: int):
    """Save the default group, the sign-in restriction and the object key."""
    system = found_or_404(get_auth_system(system_id))
    rule_form, settings_form = _forms(system, "settings")
    if settings_form.validate_on_submit():
        try:
            group_mapping.save_mapping_settings(
                system,
                default_group_id=settings_form.default_group.data or None,
                restrict_sign_in=bool(settings_form.restrict_sign_in.data),
                allowed_statuses=settings_form.allowed_statuses.data or "",
                deny_message=settings_form.deny_message.data or "",
                group_object_key=settings_form.group_object_key.data or "",
                allowed_email_domains=settings_form.allowed_email_domains.data or "",
                required_claim=settings_form.required_claim.data or "",
                required_claim_message=settings_form.required_claim_message.data or "",
                existing_accounts_only=bool(settings_form.existing_accounts_only.data),
                existing_accounts_message=settings_form.existing_accounts_message.data or "",
                actor=current_user._get_current_object(),
            )
        except group_mapping.AccessRuleError as exc:
            getattr(settings_form, exc.field).errors.append(str(exc))
        except svc.GroupError as exc:
            settings_form.allowed_statuses.errors.append(str(exc))
        else:
            flash("Group mapping settings saved.", "success")
            return redirect(url_for("admin.auth_system_groups", system_id=system.id))
    return _mapping_page(system, rule_form, settings_form), 400
