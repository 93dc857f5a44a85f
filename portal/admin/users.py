"""Admin: users, their SSO bindings, groups, role, and whether they may sign in."""

from __future__ import annotations

from flask import flash, redirect, render_template, request, url_for
from flask_login import current_user
from wtforms import SelectChoice

from portal.admin import bp
from portal.admin.forms import ConfirmForm
from portal.admin.group_forms import AssignGroupForm
from portal.lookups import found_or_404
from portal.models import User
from portal.services import account_merge as merge_svc
from portal.services import audit
from portal.services import groups as group_svc
from portal.services import users as svc


def _back_to(person: User):
    """Go back to the page of ``person``."""
    return redirect(url_for("admin.user", user_id=person.id))


@bp.route("/users")
def users():
    """Search users by name or email, paginated."""
    search = request.args.get("q", "")
    page = svc.search_users(search, request.args.get("page", 1, type=int))
    return render_template("admin/users.html", page=page, search=search)


@bp.route("/users/<int:user_id>")
def user(user_id: int):
    """Show a user: SSO bindings, locked fields, groups with their source, membership, role."""
    person = found_or_404(svc.get_user(user_id))
    form = AssignGroupForm()
    form.group.choices = [SelectChoice(g.id, g.name) for g in group_svc.list_groups()]
    return render_template(
        "admin/users_detail.html",
        person=person,
        memberships=group_svc.list_user_memberships(person),
        assign_form=form,
        confirm=ConfirmForm(),
        manager_count=svc.count_managers(),
    )


@bp.route("/users/<int:user_id>/identities/<int:identity_id>/unlink", methods=["POST"])
def unlink_user_identity(user_id: int, identity_id: int):
    """Remove one SSO binding of a user."""
    person = found_or_404(svc.get_user(user_id))
    identity = found_or_404(svc.get_identity(person, identity_id))
    if ConfirmForm().validate_on_submit():
        name = identity.auth_system.name
        audit.record_event(
            audit.IDENTITY_UNLINKED,
            actor=current_user._get_current_object(),
            system=identity.auth_system,
            details={"user_id": person.id, "by": "manager"},
        )
        svc.unlink_identity(person, identity)
        flash(f"{person.display_name} is no longer linked to {name}.", "success")
    return _back_to(person)


@bp.route("/users/<int:user_id>/groups", methods=["POST"])
def assign_user_group(user_id: int):
    """Assign a member group to a user by hand."""
    person = found_or_404(svc.get_user(user_id))
    form = AssignGroupForm()
    form.group.choices = [SelectChoice(g.id, g.name) for g in group_svc.list_groups()]
    if form.validate_on_submit():
        group = found_or_404(group_svc.get_group(form.group.data))
        if group_svc.assign_manual_group(person, group):
            flash(f"{person.display_name} is now in {group.name} (assigned by hand).", "success")
        else:
            flash(f"{person.display_name} was already assigned to {group.name}.", "info")
    return _back_to(person)


@bp.route("/users/<int:user_id>/groups/<int:group_id>/remove", methods=["POST"])
def remove_user_group(user_id: int, group_id: int):
    """Remove a group a manager assigned by hand."""
    person = found_or_404(svc.get_user(user_id))
    group = found_or_404(group_svc.get_group(group_id))
    if ConfirmForm().validate_on_submit():
        if group_svc.remove_manual_group(person, group):
            flash(f"{group.name} removed from {person.display_name}.", "success")
        else:
            flash(f"{person.display_name} had no hand-assigned {group.name}.", "info")
    return _back_to(person)


@bp.route("/users/<int:user_id>/role", methods=["POST"])
def set_user_role(user_id: int):
    """Promote a user to community manager or demote them to member (their sessions end)."""
    person = found_or_404(svc.get_user(user_id))
    actor = current_user._get_current_object()
    if ConfirmForm().validate_on_submit():
        if request.form.get("role") == "manager":
            svc.promote_user(person, actor=actor)
            flash(f"{person.display_name} is now a community manager.", "success")
        else:
            try:
                svc.demote_user(person, actor=actor)
            except svc.UserAdminError as exc:
                flash(str(exc), "error")
            else:
                if person.id == actor.id:
                    flash("You are now a member. Please sign in again.", "info")
                    return redirect(url_for("site.home"))
                flash(f"{person.display_name} is now a member.", "success")
    return _back_to(person)


@bp.route("/users/<int:user_id>/disable", methods=["POST"])
def disable_user(user_id: int):
    """Stop a user from signing in, locally or through SSO, and end their sessions."""
    person = found_or_404(svc.get_user(user_id))
    if ConfirmForm().validate_on_submit():
        try:
            svc.disable_user(person, actor=current_user._get_current_object())
        except svc.UserAdminError as exc:
            flash(str(exc), "error")
        else:
            flash(f"{person.display_name} is disabled and signed out everywhere.", "success")
    return _back_to(person)


@bp.route("/users/<int:user_id>/enable", methods=["POST"])
def enable_user(user_id: int):
    """Let a disabled user sign in again."""
    person = found_or_404(svc.get_user(user_id))
    if ConfirmForm().validate_on_submit():
        svc.enable_user(person, actor=current_user._get_current_object())
        flash(f"{person.display_name} can sign in again.", "success")
    return _back_to(person)


# --- merging accounts ---------------------------------------------------------------------


@bp.route("/users/<int:user_id>/merge")
def merge_user_search(user_id: int):
    """Pick the account to merge into this one: search by email, username, name or id."""
    kept = found_or_404(svc.get_user(user_id))
    search = request.args.get("q", "")
    return render_template(
        "admin/users_merge.html",
        kept=kept,
        search=search,
        candidates=merge_svc.find_merge_candidates(kept, search),
    )


@bp.route("/users/<int:user_id>/merge/<int:source_id>", methods=["GET", "POST"])
def merge_user(user_id: int, source_id: int):
    """Preview what merging ``source_id`` into this account moves; merge on confirmation."""
    kept = found_or_404(svc.get_user(user_id))
    source = found_or_404(svc.get_user(source_id))
    actor = current_user._get_current_object()
    form = ConfirmForm()
    if request.method == "POST" and form.validate_on_submit():
        source_label = source.email or source.display_name
        try:
            done = merge_svc.merge_accounts(
                kept, source, actor=actor, expected_digest=request.form.get("digest", "")
            )
        except merge_svc.MergeRefused as exc:
            flash(str(exc), "error")
            return redirect(url_for("admin.merge_user", user_id=user_id, source_id=source_id))
        flash(
            f"{source_label} is merged into {kept.display_name}: "
            f"{len(done.identities)} sign-in method(s), {len(done.memberships)} group "
            f"membership(s) and {len(done.teams)} team(s) moved; the other account is deleted.",
            "success",
        )
        return _back_to(kept)
    return render_template(
        "admin/users_merge_preview.html",
        preview=merge_svc.preview_merge(kept, source, actor=actor),
        confirm=form,
    )
