"""What the converge script promises beyond its step order, read from its syntax tree (issue 12).

1. The mapped account's password never changes under a working mapping: a rewrite reuses what
   the mappings hold; the account gets a password only when it is created or nothing holds one;
   the record of it is DPAPI (machine scope) in a file only SYSTEM and Administrators can open.
3. Restarts are acted on: recorded with their time, pending until Windows has started after them,
   exit 3010 once; user data waits for nothing and restarts through EC2Launch (exit 3010); the
   converge run waits, bounded, for user data that is still installing the role services.
4. File access as the worker process at both applications (serverRuntime), at APPHOST.
5. The installer is unattended: /qn /norestart always, the process itself is waited on.
7. Report-only reports; a non-self-signed root is judged by signature and by trust mode.
8. The IIS binding names the certificate; HTTP.sys is updated in place, never deleted.
"""

from __future__ import annotations

import re

import pytest

import ps_lint
from conftest import ROOT

WINDOWS = ROOT / "components" / "iis" / "windows"
CONVERGE = WINDOWS / "Set-BeaconMtls.ps1"
USER_DATA = WINDOWS / "user-data.ps1"


@pytest.fixture(scope="module")
def tree():
    return ps_lint.parse(CONVERGE.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def functions(tree):
    return ps_lint.function_nodes(tree)


@pytest.fixture(scope="module")
def converge_text() -> str:
    return CONVERGE.read_text(encoding="utf-8")


def body(functions, name: str) -> str:
    return ps_lint.node_text(functions[name])


def calls(node, name: str) -> list:
    return [c for c in ps_lint.walk(node) if c.type == "command" and ps_lint._command_name(c) == name]


def branch_of(node, function_node) -> str:
    """Source of the smallest if-branch or script block around `node` inside the function."""
    parent = node.parent
    while parent is not None and parent != function_node and parent.type not in ("statement_block", "script_block_expression"):
        parent = parent.parent
    return ps_lint.node_text(parent) if parent is not None else ""


# --- 1. the mapped account's password ----------------------------------------------------------------

def test_a_password_is_made_only_where_no_mapping_can_be_using_the_old_one(tree, functions) -> None:
    makers = [c for c in ps_lint.walk(tree.root_node) if c.type == "command" and ps_lint._command_name(c) == "New-RandomPassword"]
    assert len(makers) == 2
    account = functions["Get-MappedAccount"]
    assert all(account.start_byte <= c.start_byte < account.end_byte for c in makers)
    text = body(functions, "Get-MappedAccount")
    # (a) a missing account: created with what the mappings hold if they hold one, a new one only otherwise
    assert re.search(r"is missing\" \{\s*if \(-not \$result\.password\) \{ \$result\.password = New-RandomPassword \}", text)
    # (b) an existing account only when no mapping holds its password and none is recorded
    assert re.search(r"elseif \(\$held\.Count -eq 0\) \{\s*if \(-not \$recorded\) \{\s*Invoke-Converge [^{]*\{\s*\$result\.password = New-RandomPassword", text)
    # What the mappings hold comes first.
    assert text.index("$result.password = $held[0]") < text.index("New-RandomPassword")


def test_the_account_password_is_set_only_in_get_mapped_account_and_never_by_a_rewrite(tree, functions) -> None:
    setters = [c for c in ps_lint.walk(tree.root_node) if c.type == "command"
               and ps_lint._command_name(c) in ("Set-LocalUser", "New-LocalUser") and "-Password" in ps_lint.node_text(c)]
    account = functions["Get-MappedAccount"]
    assert setters and all(account.start_byte <= c.start_byte < account.end_byte for c in setters)
    for name in ("Sync-Lockdown", "Write-Lockdown"):
        reached = ps_lint.reachable_commands(tree, name) - ps_lint.reachable_commands(tree, "Get-MappedAccount") - {"get-mappedaccount"}
        assert not {"set-localuser", "new-localuser", "new-randompassword"} & reached, name
    # The rewrite writes the password the account resolution returned (the held one).
    lockdown = body(functions, "Sync-Lockdown")
    assert "-Password $mapped.password" in lockdown


def test_a_resync_makes_the_account_match_iis_never_the_other_way(functions) -> None:
    text = body(functions, "Get-MappedAccount")
    resync = re.search(r"if \(\$held\.Count -gt 0 -and \$recorded -cne \$held\[0\]\) \{(.*?)\n    \}", text, re.S)
    assert resync, "the account is set to the password the mappings hold when the record is missing or differs"
    assert "Set-LocalUser" in resync.group(1) and "Write-Lockdown" not in resync.group(1)
    # A record always names the account's password: written after Set-LocalUser, before New-LocalUser.
    assert resync.group(1).index("Set-LocalUser") < resync.group(1).index("Save-AccountRecord")
    created = text[text.index("is missing"):text.index("New-LocalUser")]
    assert "Save-AccountRecord" in created


def test_the_held_password_is_read_from_the_mappings(functions) -> None:
    text = body(functions, "Get-HeldPassword")
    assert "[string]$item.GetAttributeValue('password')" in text and "'manyToOneMappings', 'oneToOneMappings'" in text
    assert "$Section.GetCollection($collection)" in text
    # The section is applicationHost.config's at the site's location, the one the mappings are written to.
    lockdown = body(functions, "Sync-Lockdown")
    assert "$section = $config.GetSection($certMapFilter, $siteLocation)" in lockdown and "Get-MappedAccount -Section $section" in lockdown


def test_the_record_rests_on_systems_dpapi_key_and_a_file_created_private(tree, functions) -> None:
    """DPAPI user scope under LocalSystem (the SSM Agent's account): only SYSTEM decrypts it. No
    entropy or other 'secret' in the script (anyone can read the script); machine scope is gone."""
    save = body(functions, "Save-AccountRecord")
    read = body(functions, "Read-AccountRecord")
    for text in (save, read):
        assert "DataProtectionScope]::CurrentUser" in text and "LocalMachine" not in text
    assert "::Protect([Text.Encoding]::UTF8.GetBytes($Value), $null," in save and "::Unprotect([IO.File]::ReadAllBytes($accountRecord), $null," in read
    assert "recordEntropy" not in ps_lint.node_text(tree.root_node)
    # Created new with its ACL in one call (CreateNew fails on a file someone else made; a stale
    # temporary file is deleted first), in a state folder already made private.
    assert save.index("if (-not $run.folderPrivate) { throw") < save.index("::Protect(")
    assert save.index("[IO.File]::Delete($temporary)") < save.index("System.IO.FileStream")
    assert "([IO.FileMode]::CreateNew)" in save and "([IO.FileShare]::None)" in save and "(New-PrivateSecurity -File)" in save
    assert read.index("if (-not $run.folderPrivate -or") < read.index("::Unprotect(")
    assert "System.Security, Version=4.0.0.0" in body(functions, "Use-DataProtection")


def test_no_password_reaches_the_report_or_the_logs(tree) -> None:
    """No string the script prints, logs or reports interpolates a password-carrying value."""
    carriers = re.compile(r"\$(held|recorded|plain|blob|secure)\b|\.password\b|\$password\b", re.I)
    for node in ps_lint.walk(tree.root_node):
        if node.type == "expandable_string_literal":
            assert not carriers.search(ps_lint.node_text(node)), ps_lint.node_text(node)
    # The functions that handle the password in the clear build no strings from it at all.
    for name in ("Save-AccountRecord", "Read-AccountRecord", "Get-HeldPassword", "New-RandomPassword"):
        strings = [ps_lint.node_text(n) for n in ps_lint.walk(ps_lint.function_nodes(tree)[name]) if n.type == "expandable_string_literal"]
        assert not [t for t in strings if re.search(r"\$(value|text|plain|blob)\b", t, re.I)], (name, strings)
    for command in ps_lint.commands(tree):
        if command.name in ("Write-Log", "Add-Problem", "Write-Output", "Write-Verbose", "Write-Warning"):
            assert not carriers.search(ps_lint.node_text(command.node)), ps_lint.node_text(command.node)


# --- 3. restarts ---------------------------------------------------------------------------------------

def test_every_change_that_needs_a_restart_is_recorded(functions) -> None:
    assert "RestartNeeded)\" -eq 'Yes') { Register-Reboot" in body(functions, "Sync-Features")
    schannel = body(functions, "Sync-Schannel")
    # Recorded before the value is written: a value set without its restart on record would never
    # take effect (the next run finds it equal and asks for nothing).
    assert "New-ItemProperty" in schannel and schannel.index("Register-Reboot") < schannel.index("New-ItemProperty")
    assert "(was '$current')" in schannel, "the reason names the value it replaced (the restart budget reports it)"
    installer = body(functions, "Sync-BeaconInstaller")
    assert re.search(r"\$code -eq 1641\) \{[^}]*Register-Reboot [^}]*-AlreadyRequested[^}]*\$run\.restarting = \$true", installer)
    assert re.search(r"\$code -eq 3010\) \{ Register-Reboot", installer)


def test_pending_until_windows_started_after_the_change(functions) -> None:
    assert "Get-CimInstance -ClassName 'Win32_OperatingSystem' -Property 'LastBootUpTime'" in body(functions, "Get-LastBootTime")
    state = body(functions, "Read-RebootState")
    assert "if ($boot -gt $recorded)" in state and "$report.checks.reboot.pending = $true" in state
    register = body(functions, "Register-Reboot")
    assert "-RecordedAt $now" in register and "$report.rebootRequired = $true" in register


def test_the_restart_is_asked_for_once(functions) -> None:
    request = body(functions, "Request-Reboot")
    assert "if ($null -eq $marker -or $marker.requestedAt) { return 'waiting' }" in request
    assert request.index("Write-RebootMarker") < request.index("return 'requested'")


def test_restarts_are_bounded_per_day_and_a_value_that_keeps_coming_back_fails_the_run(converge_text, functions) -> None:
    budget = int(re.search(r"^\$rebootBudget = (\d+)$", converge_text, re.M).group(1))
    assert 1 <= budget <= 4, "a few restarts a day per beacon at most"
    request = body(functions, "Request-Reboot")
    # The budget is checked before anything is recorded as asked for; past it, nothing is written.
    refused = request.index("if ($recent.Count -ge $rebootBudget) {")
    assert refused < request.index("Set-Content -LiteralPath $rebootHistory") < request.index("Write-RebootMarker")
    branch = request[refused:request.index("return 'refused'")]
    assert "Write-RebootMarker" not in branch and "Set-Content" not in branch
    assert "$repeated" in branch and "keeps changing back after each restart" in branch and "Get-ComputerGpoName" in branch
    history = body(functions, "Read-RebootHistory")
    assert "AddHours(-24)" in history
    assert "State\\Machine\\GPO-List" in body(functions, "Get-ComputerGpoName")
    tail = converge_text[converge_text.rindex("$restart = $null"):]
    assert "if ($restart -eq 'refused') { $report.error =" in tail
    assert tail.index("if ($restart -eq 'refused')") < tail.index("if ($report.error) { $report.status = 'failed'; $exitCode = 1 }")
    assert "if ($restart -eq 'requested') { $exitCode = 3010 }" in tail


def test_converge_waits_bounded_for_user_data_before_installing_features(functions) -> None:
    features = body(functions, "Sync-Features")
    assert features.index("Wait-UserData") < features.index("Install-WindowsFeature")
    wait = body(functions, "Wait-UserData")
    minutes = int(re.search(r"\$deadline = \[DateTime\]::UtcNow\.AddMinutes\((\d+)\)", wait).group(1))
    assert 0 < minutes <= 15, "bounded well inside the association's timeout"
    assert re.search(r"while \(\(Test-Path -LiteralPath \$userDataMarker\) -and \[DateTime\]::UtcNow -lt \$deadline\)", wait)
    assert "Start-Sleep -Seconds" in wait


def test_user_data_marks_that_it_is_running_and_always_clears_it() -> None:
    text = ps_lint.strip_user_data_wrapper(USER_DATA.read_text())
    converge = CONVERGE.read_text()
    assert "Join-Path $dir 'user-data.running'" in text and "Join-Path $dataDir 'user-data.running'" in converge
    assert text.index("Set-Content -LiteralPath $running") < text.index("Install-WindowsFeature")
    assert re.search(r"finally \{\s*Remove-Item -LiteralPath \$running", text)


# --- 4. file access as the worker process ----------------------------------------------------------------

def test_authenticated_user_override_is_written_at_both_applications(functions) -> None:
    settings = body(functions, "Get-LockdownSetting")
    assert "foreach ($application in $state.serverRuntime.locations)" in settings
    assert "filter = $runtimeFilter; name = 'authenticatedUserOverride'; value = [string]$state.serverRuntime.authenticatedUserOverride" in settings
    # Mapping on, anonymous off, SSL flags, in this order per location; serverRuntime last.
    order = [settings.index(s) for s in ("name = 'enabled'; value = [bool]$mapping.enabled", "filter = $anonymousFilter",
                                         "filter = $accessFilter", "filter = $runtimeFilter")]
    assert order == sorted(order)


# --- 5. the installer ------------------------------------------------------------------------------------

def test_msiexec_is_always_silent_and_never_restarts(functions) -> None:
    installer = body(functions, "Sync-BeaconInstaller")
    assert re.search(r"\$arguments = @\('/i', [^\n]*'/qn', '/norestart'", installer)
    assert "Start-Process -FilePath $program -ArgumentList $arguments -PassThru" in installer
    assert "-Wait" not in re.search(r"\$process = Start-Process[^\n]*", installer).group(0), "wait on the process, not its children"
    assert "$null = $process.Handle" in installer and ".WaitForExit(" in installer and "$process.ExitCode" in installer
    assert "if ($kind -eq 'exe' -and $given.Count -eq 0) { throw" in installer


def _pattern(text: str, anchor: str) -> str:
    match = re.search(re.escape(anchor) + r" '([^']+)'", text)
    assert match, anchor
    return match.group(1)


def test_operator_switches_that_would_show_ui_or_restart_are_dropped(functions) -> None:
    pattern = re.compile(_pattern(body(functions, "Sync-BeaconInstaller"), "$_ -notmatch"), re.I)  # -notmatch ignores case
    for dropped in ("/qn", "/QN", "/qb", "/qr+", "/qf", "/passive", "/quiet", "/norestart", "/forcerestart", "/promptrestart", "/q"):
        assert pattern.search(dropped), dropped
    for kept in ("INSTALLDIR=C:\\FlexNet", "/l*v", "BEACON=1", "/qnx"):
        assert not pattern.search(kept), kept


def test_arguments_with_spaces_are_quoted(functions) -> None:
    text = body(functions, "Format-ProcessArgument")
    assert "if ($Value -notmatch '[\\s\"]') { return $Value }" in text
    property_form = re.compile(re.search(r"if \(\$Value -match '(\^\(\[A-Za-z_\][^']*)'\)", text).group(1))
    assert property_form.search('INSTALLDIR=C:\\Program Files\\FlexNet')
    assert 'return "$($Matches[1])=`"$($Matches[2])`""' in text and 'return "`"$Value`""' in text


# --- 7. report-only and the Root store ----------------------------------------------------------------

def test_self_signed_is_decided_by_signature_not_by_names(functions) -> None:
    text = body(functions, "Test-SelfSigned")
    assert "X509Chain -ArgumentList $true" in text and ".Build($Certificate)" in text
    assert "ChainElements.Count -ne 1" in text and "'PartialChain', 'NotSignatureValid'" in text
    root = body(functions, "Test-RootStore")
    assert "-not (Test-SelfSigned -Certificate $_)" in root and "$_.Subject -ne $_.Issuer" not in root


def test_a_non_self_signed_root_is_a_warning_under_exclusive_trust_and_an_error_otherwise(functions) -> None:
    root = body(functions, "Test-RootStore")
    assert re.search(r"if \(@\('1', '2'\) -contains \"\$mode\"\) \{ \[void\]\$report\.warnings\.Add", root)
    assert re.search(r"else \{ Add-Problem \"LocalMachine\\Root holds", root)


def test_report_only_changes_nothing_and_never_restarts(tree, functions) -> None:
    assert "if ($reportOnlyMode) { return }" in body(functions, "Invoke-Converge")
    assert "if ($reportOnlyMode -or $What.Count -eq 0) { return }" in body(functions, "Invoke-ConvergeAll")
    assert "if (-not $reportOnlyMode) { Remove-Item -LiteralPath $rebootMarker" in body(functions, "Read-RebootState")


# --- 8. the binding and HTTP.sys -----------------------------------------------------------------------

def test_the_iis_binding_names_the_certificate_once_per_certificate(functions) -> None:
    text = body(functions, "Sync-SiteBinding")
    assert "$binding.AddSslCertificate($Thumbprint, 'My')" in text
    # The marker after the call: a call that failed is tried again; one that returned is not repeated.
    assert text.index("AddSslCertificate(") < text.index("Set-Content -LiteralPath $attempt")
    assert "if (Test-Path -LiteralPath $attempt) {" in text


def test_http_sys_is_updated_in_place_and_added_only_when_absent(tree, functions) -> None:
    text = body(functions, "Sync-HttpSys")
    assert "$verb = 'update'" in text and "if ($null -eq $current) { $verb = 'add' }" in text
    code = ps_lint.node_text(tree.root_node)
    assert not re.search(r"'delete'|\bdelete sslcert", code), "netsh http delete sslcert leaves 443 without TLS for a moment"


# --- the private state folder (issue 18) -------------------------------------------------------------

def test_the_state_folder_is_created_private_and_checked_on_every_run(functions) -> None:
    security = body(functions, "New-PrivateSecurity")
    assert "$security.SetAccessRuleProtection($true, $false)" in security and "foreach ($sid in $trustedSids)" in security
    assert "'ContainerInherit, ObjectInherit', 'None', 'Allow'" in security, "files created inside inherit the private ACL"
    init = body(functions, "Initialize-StateFolder")
    assert "$null = [IO.Directory]::CreateDirectory($dataDir, (New-PrivateSecurity))" in init
    assert init.index("Get-PrivacyProblem -Item $top -Top") < init.index("foreach ($item in @(Get-StateItem -Path $dataDir))")
    # An item someone else owns, or a link, is deleted; an item of ours open to others made private.
    assert re.search(r"if \(\$itemWhy -match '\^\(owned by\|a link\)'\) \{\s*Invoke-Converge [^{]*\{ Remove-StateItem -Item \$item \}", init)
    assert "Set-Acl -LiteralPath $item.FullName -AclObject (New-PrivateSecurity -File:(-not $item.PSIsContainer))" in init
    assert "$run.folderPrivate = -not $reportOnlyMode -or ($report.drift.Count -eq $run.drift)" in init
    problem = body(functions, "Get-PrivacyProblem")
    assert problem.index("ReparsePoint") < problem.index("Get-Acl"), "a link is judged before anything is read through it"
    assert "if ($trustedSids -notcontains $owner -and $run.adminSids -notcontains $owner)" in problem and "AreAccessRulesProtected" in problem
    # Owners may be members of Administrators (a manual run); access rules never name anyone else.
    assert "Get-LocalGroupMember -SID 'S-1-5-32-544'" in init
    assert "$trustedSids -notcontains $rule.IdentityReference.Value" in problem


def test_links_in_the_state_folder_are_never_followed(functions) -> None:
    walk = body(functions, "Get-StateItem")
    assert "-not ($item.Attributes -band [IO.FileAttributes]::ReparsePoint)" in walk
    remove = body(functions, "Remove-StateItem")
    # Directory.Delete(path, recursive=$false) on a link removes the link, not its target's files.
    assert "[IO.Directory]::Delete($Item.FullName, -not ($Item.Attributes -band [IO.FileAttributes]::ReparsePoint))" in remove
    assert "Remove-Item" not in remove, "Remove-Item -Recurse on a junction deletes what it points to in Windows PowerShell 5.1"


def test_nothing_is_logged_or_recorded_into_a_folder_that_is_not_private(functions) -> None:
    assert "if (-not $run.folderPrivate) { return }" in body(functions, "Write-Log")
    assert "if (-not $run.folderPrivate) { throw" in body(functions, "Write-RebootMarker")
    assert "if (-not $run.folderPrivate) { throw" in body(functions, "Save-AccountRecord")


@pytest.mark.parametrize(
    "mutation",
    [
        ("if ($item.PSIsContainer -and -not ($item.Attributes -band [IO.FileAttributes]::ReparsePoint)) { Get-StateItem", "if ($item.PSIsContainer) { Get-StateItem"),
        ("    if (-not $run.folderPrivate) { return }\n", ""),
    ],
)
def test_the_folder_checks_fail_when_weakened(mutation) -> None:
    text = CONVERGE.read_text(encoding="utf-8")
    assert mutation[0] in text
    mutated = ps_lint.function_nodes(ps_lint.parse(text.replace(mutation[0], mutation[1], 1)))
    with pytest.raises(AssertionError):
        test_links_in_the_state_folder_are_never_followed(mutated)
        test_nothing_is_logged_or_recorded_into_a_folder_that_is_not_private(mutated)


# --- the installer's bytes (issue 18) ----------------------------------------------------------------

def test_the_installer_is_held_open_without_write_sharing_from_its_hash_to_its_end(functions) -> None:
    text = body(functions, "Sync-BeaconInstaller")
    held = text.index("$held = [IO.File]::Open($file, [IO.FileMode]::Open, [IO.FileAccess]::Read, [IO.FileShare]::Read)")
    order = [text.index(s) for s in ("[IO.File]::Delete($file) }", "Read-S3Object", "Get-Sha256Hex -Source $held", "Start-Process", ".WaitForExit(", "} finally { $held.Dispose() }")]
    assert order == sorted(order) and order[1] < held < order[2]
    assert "Get-FileHash" not in text, "the hash is read through the handle that keeps writers out"


def test_an_override_is_what_iis_applies_against_what_apphost_holds_not_plain_drift(functions) -> None:
    """Report-only finds drift in applicationHost.config itself: that is drift, not a web.config
    override; after a commit the two are equal, so any difference left is an override."""
    effective = body(functions, "Read-Effective")
    assert "$written = Read-SettingValue -Section $apphostConfig.GetSection($setting.filter, $setting.location) -Name $setting.name" in effective
    assert "if ($written -eq $wanted -and (Read-SettingValue -Section $section -Name $setting.name) -ne $wanted) {" in effective
    assert effective.index("if ($written -eq $wanted") < effective.index("Add-Problem")
    lockdown = body(functions, "Sync-Lockdown")
    # Read afresh, after the commit, through a new ServerManager.
    assert lockdown.index("$manager.CommitChanges()") < lockdown.index("$applied = Open-ServerManager") < lockdown.index("Read-Effective -Manager $applied")


# --- review fixes (issue 18, second look) --------------------------------------------------------------

def test_the_restart_history_survives_windows_powershells_json_arrays(functions) -> None:
    """Windows PowerShell 5.1 sends a JSON array down the pipeline as ONE object: piping
    ConvertFrom-Json into Where-Object sees the whole array as $_. Assign first, then @()."""
    history = body(functions, "Read-RebootHistory")
    assert "$parsed = ConvertFrom-Json -InputObject (Get-Content -LiteralPath $rebootHistory -Raw)" in history
    assert "foreach ($entry in @($parsed))" in history
    assert not re.search(r"ConvertFrom-Json[^\n]*\)\s*\|", history), "never pipe ConvertFrom-Json's array"
    assert "[DateTime]::TryParseExact([string]$entry.at, 'o'" in history
    # Unreadable: moved aside and counted as a spent budget (never a restart loop, never stuck).
    catch = history[history.index("} catch {"):]
    assert "Move-Item -LiteralPath $rebootHistory" in catch and "$slot -lt $rebootBudget" in catch
    request = body(functions, "Request-Reboot")
    assert "[void]$history.Add(" in request and "ConvertTo-Json -InputObject @($history)" in request
    assert "Move-Item -LiteralPath $rebootMarker" in body(functions, "Read-RebootMarker")


def test_mappings_compare_with_case(functions) -> None:
    lockdown = body(functions, "Sync-Lockdown")
    assert "-Compress) -cne (ConvertTo-Json -InputObject $wantedMany" in lockdown and "-Compress) -cne $siteJson" in lockdown
    assert not re.search(r"-Compress\) -ne ", lockdown)


def test_a_failure_while_building_the_mappings_commits_the_section_settings_alone(functions) -> None:
    lockdown = body(functions, "Sync-Lockdown")
    build = lockdown[lockdown.index("if ($null -ne $mapped -and $null -ne $currentMany)"):lockdown.index("foreach ($item in @(Set-LockdownSetting")]
    assert build.index("try {") < build.index("Get-WantedManyToOne") < build.index("Set-ManyToOne") < build.index("Sync-OneToOne") < build.index("} catch {")
    catch = build[build.index("} catch {"):]
    assert catch.index("if ($reportOnlyMode) { throw }") < catch.index("Write-LockdownFallback -Settings $settings") < catch.index("throw \"the mappings could not be built")
    # Duplicate names are refused inside that try: the section settings alone are still written
    # (tests/iis/test_converge_flow.py proves on the syntax tree that nothing skips them).
    assert "if ($reportOnlyMode) { return 0 }" in body(functions, "Write-LockdownFallback")


def test_virtual_directories_are_served_paths(functions) -> None:
    served = body(functions, "Get-ServedPath")
    assert "$iisSite.Applications[$where.path]" in served and "$rootApplication.VirtualDirectories[$where.path]" in served


IIS_DUPLICATE = ("Filename: \\\\?\\C:\\Beacon\\Warehouse\\web.config Line number: 12 Error: Cannot add duplicate collection entry "
                 "of type 'mimeMap' with unique key attribute 'fileExtension' set to '.osd'")


def test_the_duplicate_mime_map_is_recognised_in_iis_own_message(functions) -> None:
    text = body(functions, "Sync-MimeMaps")
    template = re.search(r"\$message -match \"([^\"]+)\"", text).group(1)
    assert template == "set to '$([regex]::Escape($_.fileExtension))'"
    pattern = lambda ext: "set to '" + re.escape(ext) + "'"  # noqa: E731  (the same pattern, as .NET builds it)
    assert re.search(pattern(".osd"), IIS_DUPLICATE) and not re.search(pattern(".nds"), IIS_DUPLICATE)
    assert not re.search(r"duplicate[^']*'\.osd'", IIS_DUPLICATE), "the earlier pattern could never match"


def test_mime_maps_wait_for_the_beacons_paths_and_never_collide(functions) -> None:
    text = body(functions, "Sync-MimeMaps")
    wait = text.index("if ($served.Count -lt $locations.Count) {")
    assert wait < text.index("CreateElement('mimeMap')") and "return" in text[wait:text.index("}", wait)]
    # Added only when no path applies the extension; a partial one is a problem, not a patch.
    assert "if ($lacking.Count -eq 0) { continue }" in text
    assert text.index("if ($where.Count -gt 0) { Add-Problem") < text.index("CreateElement('mimeMap')")


def test_request_filtering_writes_only_what_would_be_refused(functions) -> None:
    text = body(functions, "Sync-RequestFiltering")
    assert text.index("if (Test-ExtensionAllowed -Section $section -Extension $extension) { continue }") < text.index("CreateElement('add')")
    allowed = body(functions, "Test-ExtensionAllowed")
    assert "GetAttributeValue('allowed')" in allowed and "GetAttributeValue('allowUnlisted')" in allowed


# --- the beacon software and its registration (issue 19) ----------------------------------------------

def test_flexeras_installshield_setup_gets_its_v_argument_quoted(functions) -> None:
    text = body(functions, "Format-SetupArgument")
    assert "if ($Value -cmatch '^/v(.+)$') {" in text and 'return "/v`"$inner`""' in text
    assert "if ($inner -match '\"') { throw" in text
    assert "Format-SetupArgument -Value $_" in body(functions, "Sync-BeaconInstaller")
    msi = re.search(r"\$extra = @\(\$given[^\n]*", body(functions, "Sync-BeaconInstaller")).group(0)
    assert "Format-ProcessArgument" in msi and "Format-SetupArgument" not in msi, "/v is the .exe wrapper's, never msiexec's"


def test_each_beacon_stages_only_its_own_registration_file_privately(functions) -> None:
    text = body(functions, "Sync-BeaconRegistration")
    assert "Get-EC2InstanceMetadata -Category 'InstanceId'" in text and "Assert-Match $instanceId '^i-[0-9a-f]{8,17}$'" in text
    assert '$secretName = "$($registration.secretNamePrefix)$instanceId"' in text
    assert "Assert-Match $registration.secretNamePrefix '^flexnet-beacon/[A-Za-z0-9_-]{1,38}/beacon-registration/$'" in text
    # Written new with its private ACL (never into someone else's file), only when it changed.
    assert text.index("[IO.File]::Delete($file)") < text.index("([IO.FileMode]::CreateNew)") and "(New-PrivateSecurity -File)" in text
    assert text.index("Get-Sha256Hex -Source ([IO.File]::ReadAllBytes($file))") < text.index("Invoke-Converge")
    # A missing secret is a warning saying what to do; any other error fails the step.
    assert "ResourceNotFound" in text and text.index("-notmatch") < text.index("{ throw }")
    # Nothing of the file's content (or a hash of it) reaches the report or the log.
    for node in ps_lint.walk(functions["Sync-BeaconRegistration"]):
        if node.type == "expandable_string_literal":
            assert not re.search(r"\$(bytes|secret)\b|Sha256", ps_lint.node_text(node)), ps_lint.node_text(node)
