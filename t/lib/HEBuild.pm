package HEBuild;

# Which backends this build of RT::Extension::HealthEndpoint has, and
# which it left out on purpose, as Makefile.PL decided: make writes
# blib/he_build.pl (next to blib/lib, not installed).
#
# A backend left out on purpose (HE_WITHOUT_PG=1, HE_WITHOUT_MYSQL=1,
# HE_WITHOUT_SQLITE=1, HE_WITHOUT_REDIS=1) is a clean skip, CI=true or
# not.  One that is missing because its library was not found is not
# "omitted": under CI=true t/00-load.t and HETest::Servers::need_server
# fail for it.
#
#   omitted()                the names left out, e.g. ('SQLite')
#   omitted('SQLite')        true if that one was left out
#   built('SQLite')          true if the module has that backend
#   skip_all_if_omitted($b)  plan skip_all, saying so, if $b was left out
#   unavailable($b, [$ok, $why], ...)
#       why backend $b cannot be tested here, or () if it can:
#       ($reason, $fatal), $fatal when CI=true and the reason is not a
#       deliberate omission.  Each [$ok, $why] is one more requirement
#       (a code ref that returns true when met).
#   need_backend($b)         true if $b can be tested; if not, plan
#                            skip_all (the current test or subtest), or,
#                            when unavailable() calls it fatal, fail and
#                            return false: the caller returns or exits.
#
# Names are as RT::Extension::HealthEndpoint::backends() gives them: Pg,
# mysql, SQLite, Redis.

use strict;
use warnings;

use Exporter qw(import);
use File::Spec ();
use Test::More ();

our @EXPORT_OK = qw(build_info omitted built skip_all_if_omitted unavailable
                    need_backend);

my $INFO;

# { built => [...], omitted => [...], missing => [...] }.  Without the
# file (a module loaded from elsewhere than a blib) nothing counts as
# omitted, and built is what the module says.
sub build_info {
    return $INFO if $INFO;
    require RT::Extension::HealthEndpoint;
    my $pm = $INC{'RT/Extension/HealthEndpoint.pm'} // '';
    my ($top) = $pm =~ m{^(.*)/lib/RT/Extension/HealthEndpoint\.pm\z};
    my $file = defined $top ? File::Spec->rel2abs("$top/he_build.pl") : undef;
    my $info = defined $file && -f $file ? do $file : undef;
    die "HEBuild: cannot read $file: " . ($@ || $!) . "\n"
        if defined $file && -f $file && ref $info ne 'HASH';
    $info //= { omitted => [], missing => [] };
    $info->{built} = [ grep { $_ ne 'Oracle(DBI)' }
                       RT::Extension::HealthEndpoint::backends() ];
    return $INFO = $info;
}

sub omitted {
    my @o = @{ build_info()->{omitted} };
    return @_ ? scalar(grep { $_ eq $_[0] } @o) : @o;
}

sub built {
    my ($name) = @_;
    return scalar grep { $_ eq $name } @{ build_info()->{built} };
}

sub _omitted_reason {
    my ($name) = @_;
    return "the $name backend was left out of this build (HE_WITHOUT_\U$name\E=1)";
}

sub skip_all_if_omitted {
    my ($name) = @_;
    Test::More::plan(skip_all => _omitted_reason($name)) if omitted($name);
    return;
}

sub unavailable {
    my ($name, @more) = @_;
    my $ci = ($ENV{CI} // '') eq 'true' ? 1 : 0;
    return (_omitted_reason($name), 0) if omitted($name);
    return ("RT::Extension::HealthEndpoint was built without the $name backend",
            $ci) unless built($name);
    for my $req (@more) {
        my ($ok, $why) = @$req;
        return ($why, $ci) unless $ok->();
    }
    return;
}

sub need_backend {
    my ($name) = @_;
    my ($why, $fatal) = unavailable($name);
    return 1 unless defined $why;
    Test::More::plan(skip_all => $why) unless $fatal;
    Test::More::fail("$why (under CI=true a skip is a failure)");
    return 0;
}

1;
