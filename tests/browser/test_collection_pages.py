"""Collections in the browser: an owner makes a private collection for a named member from the
Documents page, switches to it, uploads into it and changes its settings; a member not named
never sees it; deleting it moves its documents to the default collection."""

from __future__ import annotations

import pytest
from playwright.sync_api import Browser, expect

from tests.browser.conftest import fits_width, fresh_world, log_in
from tests.conftest import World
from tests.processes import committed


@pytest.fixture
def own_world(django_db_setup) -> World:  # noqa: ANN001
    return committed(fresh_world, "Shelves")


def test_an_owner_makes_a_private_collection_and_a_member_not_named_never_sees_it(
    browser: Browser, own_world, asgi_server
):
    base = asgi_server.host_url(own_world.tenant.subdomain)
    owner = browser.new_page(viewport={"width": 1280, "height": 900})
    log_in(owner, base, own_world.owner.email)
    expect(owner.locator("#collection-switcher")).to_contain_text("General")

    owner.click("#collection-new")
    owner.fill("#collection-name", "Board")
    owner.check("input[name=visibility][value=members]")
    owner.click("#collection-save")

    expect(owner.locator("h1")).to_contain_text("in Board")
    expect(owner.locator("#collection-switcher [aria-current=page]")).to_have_text("Board private")
    expect(owner.locator("#collection_id option:checked")).to_have_text("Board")
    owner.fill("#title", "Board minutes")
    owner.fill("#content", "The board approved the budget.")
    owner.click("#upload button[type=submit]")
    expect(owner.locator(".doc-item", has_text="Board minutes")).to_be_visible(timeout=60_000)
    fits_width(owner)

    member = browser.new_page(viewport={"width": 390, "height": 844})
    log_in(member, base, own_world.member.email)
    expect(member.locator("#collection-switcher")).not_to_contain_text("Board")
    expect(member.locator("#document-list")).not_to_contain_text("Board minutes")
    assert member.goto(f"{base}/collections/new/").status == 403  # settings are for owners and admins

    owner.click("#collection-settings")
    owner.check(f"input[name=member_ids][value='{own_world.member.id}']")
    owner.click("#collection-save")
    expect(owner.locator("input[name=member_ids]:checked")).to_have_count(1)
    member.goto(f"{base}/")
    expect(member.locator("#collection-switcher")).to_contain_text("Board")
    expect(member.locator(".doc-item", has_text="Board minutes")).to_be_visible()
    expect(member.locator(".doc-item", has_text="Board minutes").locator("text=Delete")).to_have_count(0)

    owner.select_option("#move-to", label="General")
    owner.click("#collection-delete")
    expect(owner.locator("#collection-switcher")).not_to_contain_text("Board")
    expect(owner.locator(".doc-item", has_text="Board minutes")).to_contain_text("General")
    owner.close()
    member.close()


def test_several_files_upload_at_once_or_by_dropping_each_with_its_own_progress(
    browser: Browser, own_world, asgi_server, tmp_path
):
    base = asgi_server.host_url(own_world.tenant.subdomain)
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    log_in(page, base, own_world.member.email)
    files = []
    for name in ("alpha", "beta", "gamma"):
        path = tmp_path / f"{name}.txt"
        path.write_text(f"The {name} notes. " * 2000)  # big enough for progress events
        files.append(str(path))

    page.set_input_files("#file", files)
    page.click("#upload button[type=submit]")

    items = page.locator("#upload-queue .upload-item")
    expect(items).to_have_count(3)
    for name in ("alpha.txt", "beta.txt", "gamma.txt"):
        item = page.locator(f"#upload-queue .upload-item[data-name='{name}']")
        expect(item).to_contain_text("Added", timeout=60_000)
        expect(item.locator("progress")).to_have_attribute("value", "100")
    for title in ("alpha", "beta", "gamma"):
        expect(page.locator(".doc-item", has_text=title)).to_be_visible(timeout=60_000)

    page.evaluate(
        """() => {
          const transfer = new DataTransfer();
          transfer.items.add(new File(["Dropped notes about the garden."], "dropped.txt", {type: "text/plain"}));
          transfer.items.add(new File([new Uint8Array([0, 1, 2, 3])], "broken.bin"));
          const drop = new DragEvent("drop", {dataTransfer: transfer, bubbles: true, cancelable: true});
          document.getElementById("upload-card").dispatchEvent(drop);
        }"""
    )

    expect(page.locator("#upload-queue .upload-item[data-name='dropped.txt']")).to_contain_text("Added", timeout=60_000)
    expect(page.locator("#upload-queue .upload-item[data-name='broken.bin']")).to_contain_text("not supported")
    expect(page.locator(".doc-item", has_text="dropped")).to_be_visible(timeout=60_000)
    page.close()
