package HETest::Web;

=head1 NAME

HETest::Web - real web servers and monitoring clients around a throwaway RT

=head1 SYNOPSIS

    use lib 't/lib';
    use HETest::Web qw(:all);
    BEGIN { require_or_skip(web_missing('apache-fcgid')) }
    use Test::More;

    my $rt  = rt_for_web();                 # HETest::RT: Pg, WebPath /rt
    my $web = start_apache_fcgid($rt);      # Debian's apache2-fcgid.conf
    deployment_checks($rt, $web);           # the shared subtests
    $web->stop;

    my $hap = start_server($rt, name => 'haproxy', cmd => [...], port => ...);
    my $text = eg_template('haproxy.cfg', '127.0.0.1:8080' => "127.0.0.1:$port");

=head1 DESCRIPTION

The deployment tests (t/86 to t/88) run RT the way Debian ships it, under
Apache with mod_fcgid, under Apache with mod_perl 2, and under nginx with
spawn-fcgi, each from Debian's own configuration file (the RT_SITE_CONFIG
it names replaced) plus a private server config in the RT's temp dir: a free
port on 127.0.0.1, logs, pid and lock files in the temp dir, nothing in /etc
read for the server itself, no service touched.  As root every server runs
as the unprivileged user of L<HETest::Proc> (nobody, or HETEST_RUN_AS).
The RT underneath is an L<HETest::RT> on a private PostgreSQL with the
plugin loaded from the built blib (copied into the temp dir when root).
The RT is the one HETEST_RT_HOME names, and the Debian files those of its
major version (F</etc/request-tracker4/apache2-fcgid.conf>, C<rt4-fcgi>,
...; HETEST_RT_ETC and HETEST_NGINX_EXAMPLE name others); a source
install such as F</opt/rt6> has none, and t/86 to t/88 skip there.

The monitoring test (t/89) uses C<start_server>, C<eg_template> and the
skip helpers for HAProxy, the blackbox exporter, check_http/check_curl and
icinga2 against an rt-server.

The servers are L<HETest::Proc> server objects, spawned by
C<HETest::Proc::spawn> (a session of their own, unprivileged when root) and
handed to its watchdog, which stops them should the test be killed; they
are stopped at END before HETest::RT removes the temp dir.

=head1 FUNCTIONS

=over

=item web_missing(@what)

Reasons (a list of strings, empty when all is there) why these can not run
here: C<'rt'> (HETest::RT with PostgreSQL), C<'apache-fcgid'>,
C<'apache-modperl'>, C<'nginx-fcgi'>, C<'haproxy'>, C<'check_http'>,
C<'check_curl'>, C<'blackbox'>, C<'icinga2'>.

=item require_or_skip(@reasons)

Before the plan: skip the test file with the reasons; under C<CI=true> one
failing test instead (a missing package is an error in CI).

=item subtest_requires(@reasons)

Inside a subtest: true when @reasons is empty; else skips the subtest
(outside CI) or fails it (CI=true) and returns false.

=item rt_for_web(%opt)

An L<HETest::RT> on PostgreSQL with C<$WebPath> C</rt>,
C<$HealthEndpoint_Timeout> 1 and C<$HealthEndpoint_CacheSeconds> 1, whose
port is the one the web server will listen on; the database is started and
initialised, rt-server is not.  %opt goes to HETest::RT->new.

=item start_apache_fcgid($rt), start_apache_modperl($rt), start_nginx_fcgi($rt)

Start that deployment and wait until RT answers the ping through it.
Return a server object (below).  start_nginx_fcgi's object has C<fixed>,
a second server block on C<fixed_port> that adds eg/nginx-healthz.conf.

=item start_server($rt, name => ..., cmd => [...], port => N, env => {...}, logs => [...], ready => sub {...})

Start a long-running program as an L<HETest::Proc> server object (its
output in C<output>, default F<run/NAME.out>; C<PERL5LIB> emptied unless
C<env> sets it), wait (C<timeout>, default HETEST_START_TIMEOUT or 120 s)
until C<port> accepts connections and C<ready> (optional) returns true.
Dies with the tails of its output, C<logs> and RT's log otherwise.

=item eg_file($name), eg_template($name, $from => $to, ...)

The text of F<eg/$name>; the template replaces each literal C<$from> (all
occurrences) and dies if one does not occur, so that the test notices when
a snippet changes under it.

=item deployment_checks($rt, $web, %opt)

The subtests every deployment runs: the worker behind the front end
loaded the plugin from blib (HETest::RTProbe), ping and status (GET, HEAD),
one checker (by the state file it maps, as the server user), 405,
no session for 200 probes while C</NoAuth/Login.html> adds them, the
near-miss paths (a fixed 404, no session), WebPath C</rt>, the
database stopped (503 within CacheSeconds + 2 x Timeout) and started
again.  %opt: C<cache_control_200> (what a 200 answer's Cache-Control
must be; default C<no-store>), C<expires_200> (an Expires header the
front end adds to 200 answers; default: none allowed).  The checker's
title is checked as far as the server's command line has room for it.

=item http_get($url), http_head_raw($url), http_request($method, $url, %opt)

Requests on a fresh connection, no cookie jar.  http_head_raw returns every
byte the server sent for a HEAD.

=item poll($seconds, $code, $step), wait_for_status($url, $code, $since)

poll calls $code until it returns true or $seconds are over.
wait_for_status polls $url for the HTTP status $code for at most
CacheSeconds + 2 x Timeout after $since (when the database changed), then
waits until no worker can still answer from a result taken before $since.

=item run_as_server($rt, @cmd, { env => {...}, timeout => 60 })

Runs a command to completion as the server user (C<HETest::Proc::run_cmd>);
returns (exit code, output), the code -1 after a timeout.

=item write_file($path, $text, [$mode]), server_dirs(@dirs)

A file (mode 0644 unless given), directories (0755), owned by the server
user when root.

=item find_program($name)

C<HETest::Proc::find_binary>.

=back

The server object (an L<HETest::Proc> server): C<name>, C<port>, C<base>
(C<http://127.0.0.1:port/rt>), C<url($path)>, C<pid>, C<stop>,
C<running>, C<logs>, C<log_tail>, C<dir>.  The RT workers that
start_nginx_fcgi starts through spawn-fcgi are one object too (C<fcgi>),
stopped by their pids.

=cut

use strict;
use warnings;

use Carp qw(croak);
use Cwd qw(abs_path);
use Exporter qw(import);
use File::Path qw(make_path);
use FindBin ();
use HTTP::Tiny;
use IO::Socket::INET;
use Test::More ();
use Time::HiRes qw(sleep time);

use HETest::Proc qw(free_port port_open server_user own log_tail find_binary
                    run_cmd);
use HETest::Ps ();
use HETest::RT;

our @EXPORT_OK = qw(
    web_missing require_or_skip subtest_requires
    rt_for_web start_apache_fcgid start_apache_modperl start_nginx_fcgi
    start_server eg_file eg_template eg_dir deployment_checks
    http_get http_head_raw http_request poll wait_for_status run_as_server find_program
);
our %EXPORT_TAGS = (all => \@EXPORT_OK);

# Test::More looks for $TODO in the package that calls it: this one.
our $TODO;

our $APACHE      = program(q(HETEST_APACHE), q(apache2), q(httpd));
our $APACHE_MODS = $ENV{HETEST_APACHE_MODULES} || '/usr/lib/apache2/modules';
our $NGINX       = program(q(HETEST_NGINX), q(nginx));
our $SPAWN_FCGI  = program(q(HETEST_SPAWN_FCGI), q(spawn-fcgi));
our $HAPROXY     = program(q(HETEST_HAPROXY), q(haproxy));
our $BLACKBOX    = program(q(HETEST_BLACKBOX), q(prometheus-blackbox-exporter), q(blackbox_exporter));
our $ICINGA2     = program(q(HETEST_ICINGA2), q(icinga2));
our $PLUGIN_DIR  = $ENV{HETEST_NAGIOS_PLUGINS} || '/usr/lib/nagios/plugins';
# Debian's files for the RT of HETEST_RT_HOME: request-tracker4 has
# /etc/request-tracker4/apache2-fcgid.conf (package rt4-apache2), rt4-fcgi
# and its nginx example, the same as RT 5's with 4 for 5.  A source
# install (/opt/rt6) has none of them: t/86-t/88 skip there.
our $RT_MAJOR    = $HETest::RT::RT_MAJOR // 5;
our $DEBIAN_RT   = $HETest::RT::RT_HOME =~ m{^/usr/share/request-tracker\d+\z} ? 1 : 0;
our $RT_ETC      = $ENV{HETEST_RT_ETC} || $HETest::RT::RT_PATHS{LocalEtcPath}
                   || "/etc/request-tracker$RT_MAJOR";
our $RT_FCGI     = HETest::RT::rt_program('rt-server.fcgi')
                   // "$HETest::RT::RT_HOME/libexec/rt-server.fcgi";
our $FCGI_NAME   = "rt$RT_MAJOR-fcgi";        # Debian's service and socket
our $NGINX_EXAMPLE = $ENV{HETEST_NGINX_EXAMPLE} ? first_existing($ENV{HETEST_NGINX_EXAMPLE})
    : first_existing(map { "/usr/share/doc/$FCGI_NAME/examples/request-tracker$RT_MAJOR.conf$_" } '', '.gz');
our $FASTCGI_PARAMS = '/etc/nginx/fastcgi_params';
our $START_TIMEOUT = $HETest::RT::START_TIMEOUT;

# The settings the deployments run with (issue 11: tolerate timing by
# polling for up to CacheSeconds + 2 x Timeout).
our %HE_CONFIG = (HealthEndpoint_Timeout => 1, HealthEndpoint_CacheSeconds => 1);

sub first_existing { HETest::RT::first_existing(@_) }

sub find_program { find_binary(@_) }

sub first_program { for (@_) { my $p = find_program($_); return $p if $p } return undef }

# The program named by $ENV{$var} (must be executable: set it to a bad path
# to see the skip), else the first of @names found.
sub program {
    my ($var, @names) = @_;
    return defined $ENV{$var} ? find_program($ENV{$var}) : first_program(@names);
}

sub eg_dir { return abs_path("$FindBin::Bin/../eg") // "$FindBin::Bin/../eg" }

# ---------------------------------------------------------------- prereqs

sub _have_module { my $m = shift; (my $f = "$m.pm") =~ s{::}{/}g; return grep { -f "$_/$f" } @INC }

sub _apache_missing {
    my (@mods) = @_;
    my @why;
    push @why, 'apache2 not installed (package apache2)' unless $APACHE;
    for my $m (@mods) {
        push @why, "$APACHE_MODS/$m->[0] missing (package $m->[1])"
            unless -f "$APACHE_MODS/$m->[0]";
    }
    return @why;
}

sub web_missing {
    my (@what) = @_;
    my @why;
    for my $w (@what) {
        if ($w eq 'rt') {
            push @why, HETest::RT->missing(db => 'Pg');
        } elsif ($w eq 'apache-fcgid') {
            push @why, _apache_missing(['mod_mpm_prefork.so', 'apache2-bin'],
                ['mod_fcgid.so', 'libapache2-mod-fcgid']);
            push @why, "$RT_ETC/apache2-fcgid.conf missing (" . _debian_package('apache2') . ')'
                unless -f "$RT_ETC/apache2-fcgid.conf";
            push @why, _fcgi_missing();
        } elsif ($w eq 'apache-modperl') {
            push @why, _apache_missing(['mod_mpm_prefork.so', 'apache2-bin'],
                ['mod_perl.so', 'libapache2-mod-perl2']);
            push @why, "$RT_ETC/apache2-modperl2.conf missing (" . _debian_package('apache2') . ')'
                unless -f "$RT_ETC/apache2-modperl2.conf";
            push @why, 'Plack::Handler::Apache2 not installed (package libplack-perl)'
                unless _have_module('Plack::Handler::Apache2');
        } elsif ($w eq 'nginx-fcgi') {
            push @why, 'nginx not installed (package nginx)' unless $NGINX;
            push @why, "$FASTCGI_PARAMS missing (package nginx-common)" unless -f $FASTCGI_PARAMS;
            push @why, 'spawn-fcgi not installed (package spawn-fcgi)' unless $SPAWN_FCGI;
            push @why, "Debian's nginx example for RT missing (" . _debian_package('fcgi')
                . ($DEBIAN_RT ? '; or /usr/share/doc excluded by dpkg path-exclude' : '') . ')'
                unless $NGINX_EXAMPLE;
            push @why, _fcgi_missing();
        } elsif ($w eq 'haproxy') {
            push @why, 'haproxy not installed (package haproxy)' unless $HAPROXY;
        } elsif ($w eq 'check_http' || $w eq 'check_curl') {
            push @why, _plugin_missing($w);
        } elsif ($w eq 'blackbox') {
            push @why, 'blackbox exporter not installed (package prometheus-blackbox-exporter)'
                unless $BLACKBOX;
        } elsif ($w eq 'icinga2') {
            push @why, 'icinga2 not installed (package icinga2-bin)' unless $ICINGA2;
            push @why, "icinga2's ITL missing (package icinga2-common)"
                unless -f '/usr/share/icinga2/include/command-plugins.conf';
        } else {
            croak "web_missing: unknown '$w'";
        }
    }
    # as root: is there a user to run the servers as?
    push @why, $@ =~ s/ at .*//sr unless eval { server_user(); 1 };
    my %seen;
    return grep { !$seen{$_}++ } @why;
}

# Which Debian package would have the file (none for a source install).
sub _debian_package {
    my ($what) = @_;
    return "package rt$RT_MAJOR-$what" if $DEBIAN_RT;
    return "$HETest::RT::RT_HOME is not Debian's request-trackerN, whose rtN-$what "
        . "the test uses; HETEST_RT_ETC / HETEST_NGINX_EXAMPLE name other files";
}

sub _fcgi_missing {
    my @why;
    push @why, "$RT_FCGI missing" . ($DEBIAN_RT ? " (package request-tracker$RT_MAJOR)" : '')
        unless -f $RT_FCGI;
    push @why, 'FCGI not installed (package libfcgi-perl)' unless _have_module('FCGI');
    return @why;
}

# A monitoring plugin that is there but cannot run (check_curl without
# liburiparser1, a mere Recommends of monitoring-plugins-standard) is as
# missing as one that is not there.
sub _plugin_missing {
    my ($name) = @_;
    my $p = "$PLUGIN_DIR/$name";
    my $pkg = $name eq 'check_http' ? 'monitoring-plugins-basic' : 'monitoring-plugins-standard';
    return "$p not installed (package $pkg)" unless -x $p;
    # (-V exits 3, UNKNOWN, even when all is well: look at what it says)
    my $out = `'$p' -V 2>&1` // '';
    return () if $out =~ /^\Q$name\E v\d/;
    return "$p cannot run: " . join(' ', split /\n/, $out)
        . ($out =~ /liburiparser/ ? ' (install liburiparser1, only recommended by monitoring-plugins-standard)' : '');
}

sub require_or_skip {
    my (@why) = @_;
    return 1 unless @why;
    my $why = join '; ', @why;
    if (($ENV{CI} || '') eq 'true') {
        Test::More::plan(tests => 1);
        Test::More::fail("CI=true, so this must run: $why");
        exit 1;
    }
    Test::More::plan(skip_all => $why);
}

sub subtest_requires {
    my (@why) = @_;
    return 1 unless @why;
    my $why = join '; ', @why;
    if (($ENV{CI} || '') eq 'true') {
        Test::More::fail("CI=true, so this must run: $why");
        Test::More::done_testing();
        return 0;
    }
    Test::More::plan(skip_all => $why);
    return 0;    # not reached
}

# ---------------------------------------------------------------- files

sub slurp {
    my ($f) = @_;
    if ($f =~ /\.gz\z/) {
        require IO::Uncompress::Gunzip;
        my $t;
        IO::Uncompress::Gunzip::gunzip($f => \$t) or croak "gunzip $f failed";
        return $t;
    }
    open my $fh, '<', $f or croak "read $f: $!";
    local $/;
    return scalar <$fh>;
}

sub eg_file { return slurp(eg_dir() . "/$_[0]") }

sub eg_template {
    my ($name, @subst) = @_;
    return substitute(eg_file($name), "eg/$name", @subst);
}

sub substitute {
    my ($text, $what, @subst) = @_;
    while (my ($from, $to) = splice @subst, 0, 2) {
        my $n = () = $text =~ /\Q$from\E/g;
        croak "$what: '$from' not found (the file changed? adjust the test)" unless $n;
        $text =~ s/\Q$from\E/$to/g;
    }
    return $text;
}

# files the servers read, directories they write into: theirs
sub write_file {
    my ($f, $text, $mode) = @_;
    return own(HETest::Proc::write_file($f, $text, $mode // 0644));
}

sub server_dirs {
    for my $d (@_) {
        make_path($d);
        chmod 0755, $d;
        own($d);
    }
}

# ---------------------------------------------------------------- servers

my @LIVE;    # servers to stop at END, before HETest::RT removes the dirs

sub start_server {
    my ($rt, %a) = @_;
    my $timeout = $a{timeout} || $START_TIMEOUT;
    my $self = HETest::Web::Server->_new(
        name => $a{name}, host => '127.0.0.1', port => $a{port},
        base => $a{base}, dir => $a{dir} || $rt->dir, cmd => $a{cmd},
        log => $a{output} || ($a{dir} || $rt->dir . '/run') . "/$a{name}.out",
        extra_logs => $a{logs} || [],
        env => { PERL5LIB => '', %{ $a{env} || {} } },
        stop_signal => $a{stop_signal} || 'TERM',
        ready => $a{ready}, ready_timeout => $timeout,
    );
    push @LIVE, $self;
    eval { $self->start; 1 } or croak "$a{name} did not come up within $timeout s"
        . " (or exited): $@--- RT log ---\n" . log_tail($rt->log_file, 20);
    return $self;
}

sub _ping_ready {
    my ($base) = @_;
    return sub {
        my $r = http_get("$base/healthz/ping");
        return $r->{status} == 200 && $r->{content} eq 'pong';
    };
}

# ---------------------------------------------------------------- the RT

sub rt_for_web {
    my (%opt) = @_;
    my $rt = HETest::RT->new(
        db => 'Pg', webpath => '/rt', port => free_port(),
        %opt,
        config => { %HE_CONFIG, %{ $opt{config} || {} } },
    );
    $rt->start_db;
    $rt->init_db;
    $rt->write_config;
    return $rt;
}

# RT's environment for a server: site config, the plugin's lib dirs
sub _rt_env { my $rt = shift; my $e = $rt->rt_env; return @$e{qw(RT_SITE_CONFIG RT_SITE_CONFIG_DIR PERL5LIB)} }

# ---------------------------------------------------------------- Apache

sub _apache_base_conf {
    my ($dir, $port, @modules) = @_;
    my $conf = <<"EOF";
# generated by HETest::Web: a private Apache httpd, nothing from /etc/apache2
ServerRoot $dir
ServerName 127.0.0.1
Listen 127.0.0.1:$port
PidFile $dir/run/httpd.pid
DefaultRuntimeDir $dir/run
Mutex file:$dir/run default
ErrorLog $dir/logs/error.log
LogLevel warn
EOF
    $conf .= "LoadModule ${_}_module $APACHE_MODS/mod_$_.so\n" for @modules;
    $conf .= <<"EOF";
TypesConfig /etc/mime.types
StartServers 2
MinSpareServers 1
MaxSpareServers 4
MaxRequestWorkers 16
EOF
    return $conf;
}

sub _start_apache {
    my ($rt, $name, $dir, $conf, %a) = @_;
    server_dirs($dir, "$dir/run", "$dir/logs", @{ $a{dirs} || [] });
    write_file("$dir/httpd.conf", $conf);
    my $base = "http://127.0.0.1:" . $rt->port . $rt->webpath;
    my $web = start_server($rt,
        name => $name, port => $rt->port, dir => $dir, base => $base,
        cmd => [ $APACHE, '-f', "$dir/httpd.conf", '-DFOREGROUND' ],
        env => $a{env} || {},
        logs => [ "$dir/logs/error.log" ],
        ready => _ping_ready($base),
    );
    $web->{conf} = "$dir/httpd.conf";
    return $web;
}

# Debian's /etc/request-tracker5/apache2-fcgid.conf (or 4), included as it is; its
# FcgidInitialEnv RT_SITE_CONFIG is overridden by a later one (mod_fcgid
# keeps the last value of a variable).
sub start_apache_fcgid {
    my ($rt) = @_;
    my $dir = $rt->dir . '/apache-fcgid';
    my ($site, $site_dir, $inc) = _rt_env($rt);
    my $conf = _apache_base_conf($dir, $rt->port,
        qw(mpm_prefork authz_core authz_host alias dir mime fcgid));
    $conf .= <<"EOF";
# what Debian's mods-available/fcgid.conf says
FcgidConnectTimeout 20
AddHandler fcgid-script .fcgi
FcgidIPCDir $dir/fcgid
FcgidProcessTableFile $dir/run/fcgid_shm

Include $RT_ETC/apache2-fcgid.conf
FcgidInitialEnv RT_SITE_CONFIG $site
FcgidInitialEnv RT_SITE_CONFIG_DIR $site_dir
FcgidInitialEnv PERL5LIB $inc
EOF
    return _start_apache($rt, 'apache2-fcgid', $dir, $conf, dirs => ["$dir/fcgid"]);
}

# Debian's apache2-modperl2.conf, with its PerlSetEnv RT_SITE_CONFIG line
# pointing at the private site config.  It cannot be included as it is and
# overridden later: its <Perl> block loads RT (and builds the PSGI app,
# calling PSGIWrap) while Apache reads the config, with the value in %ENV
# at that moment.
sub start_apache_modperl {
    my ($rt) = @_;
    my $dir = $rt->dir . '/apache-modperl';
    my ($site, $site_dir, $inc) = _rt_env($rt);
    server_dirs($dir);
    my $debian = "$RT_ETC/apache2-modperl2.conf";
    my $text = slurp($debian);
    # (/etc/request-tracker5/RT_SiteConfig.pm, whichever RT_ETC is)
    my ($setenv) = $text =~ m{^(PerlSetEnv RT_SITE_CONFIG /etc/\S+)$}m;
    my $rtconf = substitute($text, $debian,
        ($setenv // 'PerlSetEnv RT_SITE_CONFIG /etc/') => "PerlSetEnv RT_SITE_CONFIG $site");
    write_file("$dir/rt-modperl2.conf", "# $debian, RT_SITE_CONFIG changed by HETest::Web\n$rtconf");
    write_file("$dir/HETestDiag.pm", _modperl_diag_module());
    my @inc = grep { length } split /:/, $inc;
    my $conf = _apache_base_conf($dir, $rt->port,
        qw(mpm_prefork authz_core authz_host alias mime perl));
    $conf .= "PerlSwitches " . join(' ', map { "-I$_" } @inc, $dir) . "\n";
    $conf .= <<"EOF";
PerlSetEnv RT_SITE_CONFIG_DIR $site_dir
Include $dir/rt-modperl2.conf

# diagnostics for the test: \$^X, fork, %ENV inside a worker
PerlModule HETestDiag
<Location /he-diag>
  SetHandler modperl
  PerlResponseHandler HETestDiag
</Location>
EOF
    return _start_apache($rt, 'apache2-modperl', $dir, $conf);
}

sub _modperl_diag_module {
    return <<'EOF';
package HETestDiag;
# Written by HETest::Web for t/87-apache-modperl.t: what a mod_perl worker
# looks like to code that wants to fork a helper process.
use strict;
use warnings;
use Apache2::RequestRec ();
use Apache2::RequestIO ();
use Apache2::Const -compile => qw(OK);
use Config ();
use POSIX ();

sub handler {
    my $r = shift;
    my %d = (
        perl_x => $^X, program => $0, pid => $$, ppid => getppid(),
        uid => $<, euid => $>,
        env_RT_SITE_CONFIG => $ENV{RT_SITE_CONFIG} // '(unset)',
        env_MOD_PERL => $ENV{MOD_PERL} // '(unset)',
        sig_CHLD => $SIG{CHLD} // '(unset)', sig_PIPE => $SIG{PIPE} // '(unset)',
        useithreads => $Config::Config{useithreads} ? 1 : 0,
        mpm => eval { require Apache2::MPM; Apache2::MPM->show } // '?',
        rt_loaded => defined $INC{'RT.pm'} ? 1 : 0,
        plugin_loaded => defined $INC{'RT/Extension/HealthEndpoint.pm'} ? 1 : 0,
    );
    # what a child process started with system/exec sees of %ENV
    my $seen = `/bin/sh -c 'echo "x\$RT_SITE_CONFIG"'`;
    chomp $seen;
    $d{child_env_RT_SITE_CONFIG} = length($seen) > 1 ? substr($seen, 1) : '(unset)';
    # a plain fork: does the child run, can it report back, exit cleanly?
    pipe(my $rd, my $wr) or die "pipe: $!";
    my $pid = fork;
    if (!defined $pid) {
        $d{fork} = "failed: $!";
    } elsif ($pid == 0) {
        close $rd;
        print {$wr} "child $$ of " . getppid();
        close $wr;
        POSIX::_exit(0);
    } else {
        close $wr;
        local $/;
        my $msg = <$rd>;
        waitpid $pid, 0;
        $d{fork} = ($msg // '(nothing)') . ", exit status $?";
    }
    $r->content_type('text/plain');
    $r->print(join '', map { "$_=$d{$_}\n" } sort keys %d);
    return Apache2::Const::OK;
}

1;
EOF
}

# ---------------------------------------------------------------- nginx + spawn-fcgi

# Debian's rt5-fcgi (or rt4-fcgi): spawn-fcgi as in rt5-fcgi.service (-F workers, -d /,
# -s socket, -P pidfile), and its nginx example in a server block, the
# socket path changed.  A second server block (fixed_port) adds
# eg/nginx-healthz.conf.
sub start_nginx_fcgi {
    my ($rt, %opt) = @_;
    my $workers = $opt{workers} || 2;
    my $dir = $rt->dir . '/nginx';
    my $fdir = $rt->dir . "/$FCGI_NAME";
    server_dirs($dir, "$dir/logs", "$dir/tmp", $fdir);
    my ($site, $site_dir, $inc) = _rt_env($rt);
    my $sock = "$fdir/$FCGI_NAME.sock";

    # spawn-fcgi forks the workers and exits; each worker is a session of
    # its own (the watchdog gets each), stopped by the pids in the pid file.
    # The workers keep spawn-fcgi's output: their stderr.
    my $out = "$fdir/spawn-fcgi.out";
    run_cmd(
        cmd => [ $SPAWN_FCGI, '-F', $workers, '-d', '/', '-s', $sock,
                 '-P', "$fdir/$FCGI_NAME.pid", '--', $RT_FCGI ],
        env => { RT_SITE_CONFIG => $site, RT_SITE_CONFIG_DIR => $site_dir, PERL5LIB => $inc },
        dir => $fdir, log => $out, timeout => 60,
    );
    my @pids = grep { /^\d+$/ } split /\s+/, slurp("$fdir/$FCGI_NAME.pid");
    croak "spawn-fcgi: no worker pids in its pid file:\n" . log_tail($out) unless @pids;
    HETest::Proc::watch($_) for @pids;
    my $fcgi = HETest::Web::Workers->_new(name => $FCGI_NAME, extra_pids => \@pids,
        log => $out, dir => $fdir, stop_signal => 'TERM');
    push @LIVE, $fcgi;

    my $example = substitute(slurp($NGINX_EXAMPLE), $NGINX_EXAMPLE,
        "unix:/var/run/$FCGI_NAME.sock" => "unix:$sock");
    write_file("$dir/request-tracker$RT_MAJOR.conf", $example);
    write_file("$dir/nginx-healthz.conf",
        eg_template('nginx-healthz.conf', 'unix:/var/run/rt5-fcgi.sock' => "unix:$sock"));
    my $port = $rt->port;
    my $fixed_port = free_port();
    write_file("$dir/nginx.conf", <<"EOF");
# generated by HETest::Web: a private nginx, nothing from /etc/nginx but
# fastcgi_params (included by Debian's example)
daemon off;
master_process on;
worker_processes 1;
pid $dir/nginx.pid;
error_log $dir/logs/error.log warn;
events { worker_connections 256; }
http {
    access_log off;
@{[ HETest::Proc::nginx_temp_paths("$dir/tmp") ]}
    # Debian's example as it is
    server {
        listen 127.0.0.1:$port;
        server_name 127.0.0.1;
        include $dir/request-tracker$RT_MAJOR.conf;
    }

    # the same plus eg/nginx-healthz.conf
    server {
        listen 127.0.0.1:$fixed_port;
        server_name 127.0.0.1;
        include $dir/request-tracker$RT_MAJOR.conf;
        include $dir/nginx-healthz.conf;
    }
}
EOF
    my $base = "http://127.0.0.1:$port" . $rt->webpath;
    my $web = start_server($rt,
        name => 'nginx', port => $port, dir => $dir, base => $base,
        cmd => [ $NGINX, '-e', "$dir/logs/error.log", '-p', "$dir/", '-c', "$dir/nginx.conf" ],
        logs => [ "$dir/logs/error.log" ],
        ready => _ping_ready($base),
    );
    $web->{conf} = "$dir/nginx.conf";
    $web->{fcgi} = $fcgi;
    $web->{fixed_port} = $fixed_port;
    $web->{fixed_base} = "http://127.0.0.1:$fixed_port" . $rt->webpath;
    return $web;
}

# ---------------------------------------------------------------- HTTP

my $HTTP = HTTP::Tiny->new(timeout => 20, max_redirect => 0, keep_alive => 0, agent => 'hetest-web/1');

sub http_get { return $HTTP->get($_[0]) }

sub http_request {
    my ($method, $url, %opt) = @_;
    return $HTTP->request($method, $url, \%opt);
}

sub _split_url {
    my ($url) = @_;
    $url =~ m{^http://([^/:]+):(\d+)(/.*)?\z} or croak "bad url $url";
    return ($1, $2, $3 // '/');
}

# Every byte of the answer to one request on its own connection.
sub http_raw {
    my ($method, $url) = @_;
    my ($host, $port, $path) = _split_url($url);
    return HETest::Proc::http_raw($host, $port, $method, $path, 20);
}

sub http_head_raw { return http_raw('HEAD', $_[0]) }

# Poll $code (true = done) every $step seconds (0.2) for at most
# $seconds; returns the last value.
sub poll { HETest::Ps::wait_for($_[0], $_[1], $_[2] || 0.2) }

# After the database changed state at time $since: poll $url until it
# answers $code, for at most CacheSeconds + 2 x Timeout from $since.  Then
# wait, if need be, until CacheSeconds + Timeout after $since, when no
# worker can still hold a result from before the change (each worker has
# its own cache), so that every later probe must answer $code too.
sub wait_for_status {
    my ($url, $code, $since) = @_;
    my ($cache, $timeout) = @HE_CONFIG{qw(HealthEndpoint_CacheSeconds HealthEndpoint_Timeout)};
    $since //= time;
    my $got = poll($since + $cache + 2 * $timeout - time, sub { http_get($url)->{status} == $code });
    my $left = $since + $cache + $timeout - time;
    sleep $left if $left > 0;
    return $got;
}

# Run a command to completion as the server user; returns (exit code, output).
sub run_as_server {
    my ($rt, @cmd) = @_;
    my %a = ref $cmd[-1] eq 'HASH' ? %{ pop @cmd } : ();
    my $log = $rt->dir . "/run/cmd.$$." . int(rand 1e9);
    my $st = run_cmd(cmd => \@cmd, dir => $rt->dir, log => $log, status => 1,
        env => { PERL5LIB => '', %{ $a{env} || {} } }, timeout => $a{timeout} || 60);
    my $out = HETest::Proc::slurp($log) // '';
    unlink $log;
    return ($st == -1 ? -1 : $st >> 8, $out);
}

# ---------------------------------------------------------------- checks

sub _hval {
    my ($r, $h) = @_;
    my $v = $r->{headers}{$h};
    return ref $v ? join(', ', @$v) : $v;
}

sub status_body { HETest::RT::status_body(@_) }

# The headers every answer of the endpoints must have (HTTP::Tiny result).
sub check_headers {
    my ($r, $name, %o) = @_;
    my $cc = $o{cache_control} // 'no-store';
    Test::More::is(_hval($r, 'cache-control'), $cc, "$name: Cache-Control: $cc");
    if (defined $o{expires}) {
        Test::More::is(_hval($r, 'expires'), $o{expires}, "$name: Expires: $o{expires} (added by the front end)");
    } else {
        Test::More::ok(!exists $r->{headers}{expires}, "$name: no Expires header");
    }
    Test::More::is(_hval($r, 'content-length'), $o{length} // length($r->{content} // ''),
        "$name: Content-Length");
    Test::More::ok(!exists $r->{headers}{'set-cookie'}, "$name: no Set-Cookie")
        or Test::More::diag('Set-Cookie: ' . _hval($r, 'set-cookie'));
}

sub check_head_raw {
    my ($url, $code, $type, $len, $name, %o) = @_;
    my $raw = http_head_raw($url);
    my ($head) = split /\r\n\r\n/, $raw, 2;
    Test::More::like($raw, qr{\AHTTP/1\.[01] $code }, "$name: HEAD => $code")
        or Test::More::diag($raw);
    Test::More::like($raw, qr{\r\n\r\n\z}, "$name: HEAD: nothing after the headers");
    Test::More::like($head // '', qr{^Content-Type: \Q$type\E\b}mi, "$name: HEAD: $type");
    Test::More::like($head // '', qr{^Content-Length: $len\r?$}mi, "$name: HEAD: Content-Length $len");
    my $cc = $o{cache_control} // 'no-store';
    Test::More::like($head // '', qr{^Cache-Control: \Q$cc\E\r?$}mi, "$name: HEAD: Cache-Control: $cc");
    Test::More::unlike($head // '', qr{^Set-Cookie:}mi, "$name: HEAD: no Set-Cookie");
}

sub check_ping {
    my ($web, $name, %o) = @_;
    my $url = $web->url('/healthz/ping');
    $name //= 'ping';
    my %h = (cache_control => $o{cache_control_200}, expires => $o{expires_200});
    my $r = http_get($url);
    Test::More::is($r->{status}, 200, "$name: GET => 200") or Test::More::diag($r->{content});
    Test::More::is($r->{content}, 'pong', "$name: body pong");
    Test::More::like(_hval($r, 'content-type') // '', qr{^text/plain\b}, "$name: text/plain");
    check_headers($r, "$name GET", %h);
    check_head_raw($url, 200, 'text/plain', 4, $name, %h);
}

sub check_status {
    my ($web, $checks, $name, %o) = @_;
    my $url = $web->url('/healthz/status');
    my $want = status_body($checks);
    my $code = $want =~ /"status":"fail"/ ? 503 : 200;
    $name //= "status $code";
    my %h = $code == 200 ? (cache_control => $o{cache_control_200}, expires => $o{expires_200}) : ();
    my $r = http_get($url);
    Test::More::is($r->{status}, $code, "$name: GET => $code");
    Test::More::is($r->{content}, $want, "$name: body $want");
    Test::More::like(_hval($r, 'content-type') // '', qr{^application/json\b}, "$name: application/json");
    check_headers($r, "$name GET", %h);
    check_head_raw($url, $code, 'application/json', length $want, $name, %h);
    return $r;
}

sub check_405 {
    my ($web, $path) = @_;
    my $url = $web->url($path);
    for my $m (qw(POST PUT DELETE)) {
        my $r = http_request($m, $url, $m eq 'DELETE' ? () : (content => 'x=1',
            headers => { 'content-type' => 'application/x-www-form-urlencoded' }));
        Test::More::is($r->{status}, 405, "$m $path => 405");
        Test::More::is(_hval($r, 'allow'), 'GET, HEAD', "$m $path: Allow: GET, HEAD");
        Test::More::is($r->{content}, 'method not allowed', "$m $path: body");
        check_headers($r, "$m $path");
    }
}

# The checker of this RT: one process named rt-he-checker that maps the
# state file, running as the server user, its title naming the file (as
# much of it as the process's command line has room for).
sub check_checker {
    my ($rt, %o) = @_;
    my $state = $rt->state_file;
    my $c = poll(3, sub { my @p = HETest::Ps::mappers($state, 'rt-he-checker'); @p ? \@p : undef }) || [];
    Test::More::is(scalar(@$c), 1, "one rt-he-checker maps $state") or return;
    my %st = HETest::Ps::proc_status($c->[0]);
    my %u = server_user();
    Test::More::is((split ' ', $st{Uid} // '')[0], $u{uid}, "it runs as $u{name}");
    # where the server's own command line is short (mod_perl: Apache's),
    # the title is cut to its length
    my $title = HETest::Ps::proc_cmdline($c->[0]) // '';
    my $full = "rt-healthendpoint checker ($state)";
    Test::More::ok(length $title >= 25 && index($full, $title) == 0,
        "its title names it ($title)");
}

our @NEAR_MISS = ('/healthz', '/healthz/', '/healthz/ping/', '/healthz/anything');

sub deployment_checks {
    my ($rt, $web, %o) = @_;
    my %ok = (database => 'ok', redis => 'skipped');
    my %fail = (database => 'fail', redis => 'skipped');
    my %h = (cache_control_200 => $o{cache_control_200} // 'no-store',
             expires_200 => $o{expires_200});
    my $timeout = $HE_CONFIG{HealthEndpoint_Timeout};
    my $settle = $HE_CONFIG{HealthEndpoint_CacheSeconds} + 2 * $timeout;
    my $status_url = $web->url('/healthz/status');

    $rt->check_loaded_from(base => $web->base,
        name => 'the worker behind ' . $web->name . ' runs the plugin from blib');
    Test::More::subtest('ping: GET and HEAD' => sub { check_ping($web, 'ping', %h) });
    Test::More::subtest('status ok: GET and HEAD' => sub { check_status($web, \%ok, 'status ok', %h) });
    Test::More::subtest('one checker serves this RT' => sub { check_checker($rt, %o) });
    Test::More::subtest('other methods: 405' => sub {
        check_405($web, '/healthz/ping');
        check_405($web, '/healthz/status');
    });

    Test::More::subtest('200 probes create no session; /NoAuth/Login.html does' => sub {
        my $before = $rt->session_count;
        my ($n, @bad) = (0);
        for my $i (1 .. 100) {
            for my $p ('/healthz/ping', '/healthz/status') {
                my $r = http_get($web->url($p));
                $n++;
                push @bad, "$p: $r->{status}" . (exists $r->{headers}{'set-cookie'} ? ' with Set-Cookie' : '')
                    if $r->{status} != 200 || exists $r->{headers}{'set-cookie'};
            }
        }
        Test::More::is(scalar(@bad), 0, "$n probes: all 200 without Set-Cookie")
            or Test::More::diag(join "\n", @bad[0 .. ($#bad < 9 ? $#bad : 9)]);
        Test::More::is($rt->session_count, $before, "session count unchanged ($before)");
        for (1 .. 5) {
            my $r = http_get($web->url('/NoAuth/Login.html'));
            Test::More::is($r->{status}, 200, 'GET /NoAuth/Login.html => 200');
            Test::More::ok(exists $r->{headers}{'set-cookie'}, '... with a session cookie');
        }
        Test::More::is($rt->session_count, $before + 5, 'control: 5 login pages added 5 sessions');
    });

    Test::More::subtest('near-miss paths get a fixed 404 from the module' => sub {
        my %body;
        my $before = $rt->session_count;
        for my $p (@NEAR_MISS) {
            my $r = http_get($web->url($p));
            Test::More::is($r->{status}, 404, "$p => 404");
            Test::More::like(_hval($r, 'content-type') // '', qr{^text/plain\b}, "$p: text/plain");
            Test::More::is(_hval($r, 'cache-control'), 'no-store', "$p: Cache-Control: no-store");
            Test::More::ok(!exists $r->{headers}{'set-cookie'}, "$p: no Set-Cookie");
            Test::More::is(_hval($r, 'content-length'), length($r->{content} // ''), "$p: Content-Length");
            $body{$r->{content} // ''}++;
        }
        Test::More::is(scalar(keys %body), 1, 'the same body for every near miss');
        Test::More::is($rt->session_count, $before, 'and no session');
    });

    Test::More::subtest('WebPath /rt' => sub {
        Test::More::like($web->url('/healthz/ping'), qr{:\d+/rt/healthz/ping\z}, 'the probes go to /rt/healthz/...');
        my $r = http_get($web->url('/'));
        Test::More::is($r->{status}, 200, 'RT login page at /rt/');
        Test::More::like($r->{content} // '', qr{action="/rt/NoAuth/Login\.html"}, 'its form posts under /rt');
        (my $outside = $web->url('/healthz/ping')) =~ s{/rt/healthz/}{/healthz/};
        $r = http_get($outside);
        Test::More::isnt($r->{content}, 'pong', '/healthz/ping outside /rt is not answered');
        Test::More::is($r->{status}, 404, '... the front end says 404');
    });

    Test::More::subtest('database down => 503, ping still 200, back => 200' => sub {
        my $mark = $rt->rt_log_mark;
        $rt->stop_pg;
        my $got = wait_for_status($status_url, 503, time);
        Test::More::ok($got, "503 within CacheSeconds + 2 x Timeout ($settle s)");
        check_status($web, \%fail, 'status fail', %h);
        check_ping($web, 'ping with the database down', %h);
        my $log = poll(5, sub {
            my $l = $rt->rt_log_since($mark);
            $l =~ /database check failed/ ? $l : undef;
        }) // $rt->rt_log_since($mark);
        Test::More::like($log, qr/\[error\]: [^\n]*database check failed/, 'RT log: database check failed');
        my ($inc) = grep { length } split /:/, $rt->rt_env->{PERL5LIB};
        Test::More::like($log, qr{\(\Q$inc\E/RT/Extension/HealthEndpoint\.pm:},
            "the plugin runs from $inc");

        $rt->start_pg;
        $got = wait_for_status($status_url, 200, time);
        Test::More::ok($got, "200 again within $settle s");
        my @bad = grep { $_ != 200 } map { http_get($status_url)->{status} } 1 .. 10;
        Test::More::is(scalar(@bad), 0, '10 more status probes: all 200') or Test::More::diag("@bad");
        check_status($web, \%ok, 'status ok again', %h);
        my $r = http_get($web->url('/NoAuth/Login.html'));
        Test::More::is($r->{status}, 200, 'RT itself serves pages again');
    });
}

# ---------------------------------------------------------------- teardown

my $OWNER_PID = $$;

# Before HETest::RT's END, which removes the dirs these servers use (and
# HETest::Proc's, which would stop them too, later).
END {
    if ($$ == $OWNER_PID) {
        local ($?, $!, $@);
        $_->stop for reverse @LIVE;
    }
}

# A web server: an HETest::Proc server ready when its port accepts and
# its ready callback (if any) says so.
package HETest::Web::Server;

our @ISA = ('HETest::Proc::Server');

sub base { $_[0]{base} }
sub url  { my ($s, $p) = @_; return $s->{base} . ($p // '') }
sub logs { grep { defined } $_[0]{log}, @{ $_[0]{extra_logs} || [] } }

sub _ready {
    my ($self) = @_;
    return 0 unless HETest::Proc::port_open($self->{port}, $self->{host});
    return !$self->{ready} || $self->{ready}->($self);
}

sub stop {
    my ($self) = @_;
    $self->{fcgi}->stop if $self->{fcgi};
    return $self->SUPER::stop;
}

sub log_tail {
    my ($self, $n) = @_;
    return $self->SUPER::log_tail($n || 20)
        . ($self->{fcgi} ? $self->{fcgi}->log_tail($n) : '');
}

# Processes that are not our children (spawn-fcgi's workers): watched by
# pid, stopped by process group.
package HETest::Web::Workers;

our @ISA = ('HETest::Proc::Server');

use Time::HiRes qw(sleep time);

sub logs { grep { defined } $_[0]{log} }

sub _alive {
    my ($pid) = @_;
    return 0 unless kill 0, $pid;
    # an orphan that has exited but is not reaped yet is gone too
    if (open my $fh, '<', "/proc/$pid/stat") {
        my $st = <$fh> // '';
        return 0 if $st =~ /^\d+ \(.*\) Z/s;
    }
    return 1;
}

sub running { scalar grep { _alive($_) } @{ $_[0]{extra_pids} } }

sub start { Carp::croak("$_[0]{name}: started by spawn-fcgi, not restartable") }

sub stop {
    my ($self) = @_;
    my @pids = @{ $self->{extra_pids} } or return $self;
    # Each worker leads a process group (a session) of its own, which also
    # holds what it started: the plugin's checker, which has no master to
    # follow here (the workers' parent is init) and would outlive them.
    # Stop the groups, as systemd stops rt5-fcgi.service by its cgroup.
    kill $self->{stop_signal}, map { -$_ } @pids;
    my $deadline = time + $HETest::Proc::STOP_TIMEOUT;
    sleep 0.1 while time < $deadline && grep { _alive($_) } @pids;
    kill 'KILL', map { -$_ } @pids;
    HETest::Proc::unwatch($_) for @pids;
    $self->{extra_pids} = [];
    return $self;
}

1;
