"""Bring stored identity keys to the normal form of 0.1 (UTS #46 domains, quotes
removed where not needed).

Only keys that change without touching another row are rewritten (an
international domain's key becomes its A-label). A row whose address would merge
with another's, or that has no normal form any more, is left as it is and
counted here; ``manage.py kinwise_auth_backfill --dry-run`` names them.
"""

from django.db import migrations

from kinwise_auth.normalization import plan_rekeying


def rekey(apps, schema_editor):
    identity_model = apps.get_model("kinwise_auth", "EmailIdentity")
    rows = identity_model.objects.values_list("pk", "email", "email_normalized")
    plan = plan_rekeying(rows.iterator())
    for pk, key in plan.changes.items():
        identity_model.objects.filter(pk=pk).update(email_normalized=key)
    left = len(plan.refused) + sum(len(pks) for pks in plan.merges.values())
    if plan.changes or left:
        print(
            f"\n  kinwise_auth: {len(plan.changes)} identity key(s) re-keyed; "
            f"{left} left unchanged (their addresses would merge or are refused): "
            "run manage.py kinwise_auth_backfill --dry-run to see them."
        )


class Migration(migrations.Migration):
    dependencies = [
        ("kinwise_auth", "0004_sign_in_failures"),
    ]

    operations = [migrations.RunPython(rekey, migrations.RunPython.noop)]
