#!/usr/bin/perl
# Installation: build a copy of this distribution with RT's installer
# conventions, `make install` it into a temp location, and have a real RT
# (HETEST_RT_HOME) load the plugin from its plugin directory -- with no
# copy of the module in PERL5LIB (in particular not blib; PERL5LIB holds
# only the test-only HETest::RTProbe).
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use HETest::RT;
BEGIN { HETest::RT->require_or_skip(db => 'SQLite', blib => 0) }
use Test::More;
use Cwd qw(abs_path);
use File::Find ();
use File::Path qw(make_path remove_tree);

my $ROOT = abs_path("$FindBin::Bin/..");
my $RT_HOME = $HETest::RT::RT_HOME;
my $DIST = 'RT-Extension-HealthEndpoint';

# RT's own idea of its local plugin directory (RT::Generated)
my $local_plugin_path = `$^X -I$RT_HOME/lib -MRT -e 'print \$RT::LocalPluginPath'`;
unless (ok $local_plugin_path, "RT's \$LocalPluginPath: $local_plugin_path") {
    done_testing;                       # nothing below can work
    exit 1;
}

# a clean copy of the sources (no build products of the outer build)
sub copy_sources {
    my ($dst) = @_;
    make_path($dst);
    system('cp', '-a', "$ROOT/.", $dst) == 0 or die "cp failed";
    remove_tree(map { "$dst/$_" } qw(.git blib _build));
    unlink grep { -e } map { "$dst/$_" }
        qw(Makefile Makefile.old pm_to_blib MYMETA.json MYMETA.yml HealthEndpoint.bs);
    unlink glob("$dst/xs/*.o"), glob("$dst/*.o"), "$dst/xs/HealthEndpoint.c";
    return $dst;
}

# run a command in $dir with a clean-ish environment; returns (ok, output)
sub run_in {
    my ($dir, @cmd) = @_;
    local $ENV{PERL5LIB};
    local $ENV{PERL_MM_OPT};
    local $ENV{PERL_MB_OPT};
    local $ENV{MAKEFLAGS};
    local $ENV{MAKELEVEL};
    delete @ENV{qw(PERL5LIB PERL_MM_OPT PERL_MB_OPT MAKEFLAGS MAKELEVEL MFLAGS)};
    my $out = `cd '$dir' && @cmd 2>&1`;
    return ($? == 0, $out);
}

sub installed_files {
    my ($base) = @_;
    my @f;
    File::Find::find({ no_chdir => 1, wanted => sub { push @f, $File::Find::name if -f } }, $base)
        if -d $base;
    return sort @f;
}

# Start an RT whose $RT::LocalPluginPath is $plugins, no blib in PERL5LIB,
# and check the plugin answers and where its worker loaded it from; then
# make the DB check fail so the log shows that file too.
sub rt_with_plugins_in {
    my ($rt, $plugins) = @_;
    $rt->{local_plugin_path} = $plugins;
    $rt->{inc} = [];
    unless (eval { $rt->start; 1 }) {
        fail 'RT starts with the installed plugin';
        diag $@;
        return;
    }
    my $env = $rt->rt_env;
    my @with_module = grep { -e "$_/RT/Extension/HealthEndpoint.pm" } split /:/, $env->{PERL5LIB};
    is_deeply \@with_module, [], "no copy of the module in RT's PERL5LIB ($env->{PERL5LIB})";
    $rt->check_loaded_from(lib => "$plugins/$DIST/lib");
    $rt->check_ping('/healthz/ping');
    $rt->check_status('/healthz/status', { database => 'ok', redis => 'skipped' });

    my $mark = $rt->rt_log_mark;
    my $file = $rt->sqlite_file;
    rename $file, "$file.x" or die $!;
    $rt->check_status('/healthz/status', { database => 'fail', redis => 'skipped' });
    rename "$file.x", $file or die $!;
    my $log = $rt->wait_until(5, sub {
        my $l = $rt->rt_log_since($mark);
        $l =~ /database check failed/ ? $l : undef;
    }) // '';
    my ($line) = $log =~ /^([^\n]*database check failed[^\n]*)$/m;
    like $line // '', qr{\Q$plugins/$DIST/lib/RT/Extension/HealthEndpoint.pm\E},
        'the plugin was loaded from the plugin directory'
        or diag $log;
}

# Is the module installed system-wide?  Then "loaded at all" would prove
# little; the log line above still shows where it came from.
{
    local $ENV{PERL5LIB};
    delete $ENV{PERL5LIB};
    my $sys = system("$^X -e 'require RT::Extension::HealthEndpoint' 2>/dev/null") == 0;
    note $sys ? 'note: the module is also installed system-wide'
              : 'the module is not installed system-wide';
}

subtest "perl Makefile.PL RTHOME=$RT_HOME && make install DESTDIR=..." => sub {
    my $rt = HETest::RT->new(db => 'SQLite', config => { HealthEndpoint_CacheSeconds => 0 });
    my $src = copy_sources($rt->dir . '/src-rthome');
    my $dest = $rt->dir . '/destdir';
    my ($ok, $out) = run_in($src, "$^X Makefile.PL RTHOME=$RT_HOME");
    ok $ok, 'Makefile.PL' or diag $out;
    ($ok, $out) = run_in($src, 'make');
    ok $ok, 'make' or diag $out;
    ($ok, $out) = run_in($src, "make install DESTDIR=$dest");
    ok $ok, 'make install DESTDIR' or diag $out;

    my $plugins = "$dest$local_plugin_path";
    my $lib = "$plugins/$DIST/lib";
    ok -f "$lib/RT/Extension/HealthEndpoint.pm", "installed to \$LocalPluginPath/$DIST/lib"
        or diag join "\n", 'installed files:', installed_files($dest);
    ok -f "$lib/auto/RT/Extension/HealthEndpoint/HealthEndpoint.so",
        'the shared object is under the same lib/ (RT adds only lib/ to @INC)';
    my @stray = grep { !m{^\Q$plugins/$DIST/\E} && !/\.packlist$|perllocal\.pod$/ } installed_files($dest);
    is_deeply \@stray, [], 'nothing installed outside the plugin directory'
        or diag join "\n", @stray;

    if (-f "$lib/RT/Extension/HealthEndpoint.pm") {
        rt_with_plugins_in($rt, $plugins);
    }
    $rt->cleanup;
};

subtest 'perl Makefile.PL RT_PLUGIN_DIR=... && make install' => sub {
    my $rt = HETest::RT->new(db => 'SQLite', config => { HealthEndpoint_CacheSeconds => 0 });
    my $src = copy_sources($rt->dir . '/src-plugindir');
    my $plugins = $rt->dir . '/plugins';
    my ($ok, $out) = run_in($src, "$^X Makefile.PL RT_PLUGIN_DIR=$plugins NO_PERLLOCAL=1");
    ok $ok, 'Makefile.PL' or diag $out;
    ($ok, $out) = run_in($src, 'make');
    ok $ok, 'make' or diag $out;
    ($ok, $out) = run_in($src, 'make install');
    ok $ok, 'make install' or diag $out;
    ok -f "$plugins/$DIST/lib/auto/RT/Extension/HealthEndpoint/HealthEndpoint.so", 'shared object in lib/auto';
    system('chmod', '-R', 'a+rX', $plugins);
    rt_with_plugins_in($rt, $plugins);
    $rt->cleanup;
};

done_testing;
